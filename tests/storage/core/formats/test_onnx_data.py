"""ONNX external data: the model's references are checked and cut the data file exactly where onnx's
own loader reads each initializer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.dtypes import DTYPES
from storage.core.formats.onnx import External, OnnxFormat
from storage.core.formats.onnx_data import Placed, data_layout, references, resolve
from tests.models import make_weights, to_onnx, to_onnx_external

onnx = pytest.importorskip("onnx")
F32 = DTYPES["F32"]


def externals_of(model: bytes) -> list[External]:
    return OnnxFormat().externals(lambda a, b: model[a:b], len(model), max_header_bytes=1 << 24)


@pytest.mark.parametrize(("location", "expected"), [
    ("model.onnx_data", "sub/model.onnx_data"),
    ("weights/w.bin", "sub/weights/w.bin"),
    ("../model.onnx_data", None),
    ("/etc/passwd", None),
    ("a/../b", None),
    ("./model.onnx_data", None),
    ("a//b", None),
    ("a\\\\b", None),
    ("a\\x00b", None),
    ("", None),
])  # fmt: skip
def test_a_location_resolves_only_as_a_plain_relative_path(location: str, expected: str | None) -> None:
    assert resolve("sub/model.onnx", location) == expected


def test_a_real_external_data_file_is_cut_where_onnx_reads_each_initializer() -> None:
    weights = make_weights(1)
    model, data = to_onnx_external(weights)
    layout = data_layout(references("model.onnx", externals_of(model), "model.onnx_data"), len(data))
    assert not isinstance(layout, str)
    assert {t.name: (t.shape, t.dtype.name) for t in layout.tensors or ()} == {
        name: (w.shape, "F32") for name, w in weights.items()}  # fmt: skip
    for t in layout.tensors or ():
        assert data[t.offset : t.offset + t.nbytes] == weights[t.name].tobytes()
    # The model itself still parses as it did: its external initializers are opaque there.
    assert OnnxFormat().layout(lambda a, b: model[a:b], len(model), max_header_bytes=1 << 24).tensors == ()


def test_a_model_with_inline_data_names_no_external_file() -> None:
    assert externals_of(to_onnx(make_weights(2))) == []


def test_another_directory_or_file_is_not_named() -> None:
    model, _ = to_onnx_external(make_weights(3))
    assert references("model.onnx", externals_of(model), "other.bin") == []
    assert references("sub/model.onnx", externals_of(model), "model.onnx_data") == []


def placed(spans: list[tuple[int, int]]) -> list[Placed | str]:
    return [Placed(f"t{i}", DTYPES["U8"], (n,), offset, n) for i, (offset, n) in enumerate(spans)]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=20), st.integers(0, 50),
       st.randoms(use_true_random=False))  # fmt: skip
def test_placed_tensors_and_the_gaps_between_tile_the_file(gaps_sizes: list[tuple[int, int]], tail: int,
                                                           rng: random.Random) -> None:  # fmt: skip
    spans, position = [], 0
    for gap, n in gaps_sizes:
        spans.append((position + gap, n))
        position += gap + n
    shuffled = list(spans)
    rng.shuffle(shuffled)
    layout = data_layout(placed(shuffled), position + tail)
    if not spans:
        assert layout == "no initializer names it"
        return
    assert not isinstance(layout, str)  # FileLayout checks the tiling itself
    assert sorted((t.offset, t.nbytes) for t in layout.tensors or ()) == sorted(spans)


@pytest.mark.parametrize(("spans", "size", "reason"), [
    ([(0, 8), (4, 8)], 16, "overlaps"),
    ([(0, 8), (8, 9)], 16, "past the file's 16 bytes"),
])  # fmt: skip
def test_overlapping_or_overrunning_tensors_leave_the_file_a_blob(spans: list[tuple[int, int]], size: int,
                                                                  reason: str) -> None:  # fmt: skip
    layout = data_layout(placed(spans), size)
    assert isinstance(layout, str) and reason in layout


def lying(entries: dict[bytes, bytes]) -> External:
    base = {b"location": b"d.bin"}
    return External("w", F32, (2, 3), tuple({**base, **entries}.items()))


@pytest.mark.parametrize(("entries", "reason"), [
    ({b"length": b"20"}, "length 20 but F32 [2, 3] needs 24"),
    ({b"offset": b"-1"}, "not a decimal integer"),
    ({b"offset": b"1e3"}, "not a decimal integer"),
    ({b"length": b"9" * 30}, "not a decimal integer"),
    ({b"offset": "٣".encode()}, "not a decimal integer"),
])  # fmt: skip
def test_each_lie_in_a_reference_is_its_own_reason(entries: dict[bytes, bytes], reason: str) -> None:
    (found,) = references("m.onnx", [lying(entries)], "d.bin")
    assert isinstance(found, str) and reason in found
    assert data_layout([found], 100) == found


def test_a_reference_without_offset_and_length_takes_the_whole_tensor_from_the_start() -> None:
    (found,) = references("m.onnx", [lying({})], "d.bin")
    assert found == Placed("w", F32, (2, 3), 0, 24)
