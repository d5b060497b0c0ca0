"""The format registry: detection by content, one bounded ranged-read parse, layouts that tile files."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError, InternalError
from storage.core.formats import registry
from storage.core.formats.base import FileLayout, ReadRange
from storage.core.formats.safetensors import HeaderTooLarge, SafetensorsError, SafetensorsFormat
from storage.core.segments import HEADER_SEGMENT, opaque
from tests.models import to_safetensors

LIMIT = 1 << 20


def reads(data: bytes, log: list[tuple[int, int]] | None = None) -> ReadRange:
    def read(start: int, end: int) -> bytes:
        if log is not None:
            log.append((start, end))
        return data[start:end]

    return read


def detect(data: bytes) -> str:
    return registry.detect_format(reads(data), len(data), max_header_bytes=LIMIT).format_id


def test_every_builtin_format_is_registered_with_blob_last() -> None:
    assert [f.format_id for f in registry.registered_formats()] == ["gguf", "safetensors", "torchzip", "onnx", "blob"]
    assert all(registry.parses_tensors(f) for f in ("safetensors", "torchzip", "gguf", "onnx"))


def test_detection_is_by_content() -> None:
    model = to_safetensors({"w": np.ones((4, 4), np.float32)})
    ckpt = io.BytesIO()
    with zipfile.ZipFile(ckpt, "w") as z:
        z.writestr("m/data.pkl", b".")
    assert (detect(model), detect(ckpt.getvalue()), detect(b"hello"), detect(b"")) == (
        "safetensors", "torchzip", "blob", "blob")  # fmt: skip
    assert detect(model[:-1]) == "blob"  # looks like safetensors, does not parse: kept as bytes


def test_unknown_stored_format_is_an_integrity_error() -> None:
    with pytest.raises(registry.UnknownFormat):
        registry.get_format("gguf-from-the-future")
    assert issubclass(registry.UnknownFormat, IntegrityError)


def test_a_format_id_is_never_reused() -> None:
    class Impostor(SafetensorsFormat):
        pass

    with pytest.raises(ValueError, match="already registered"):
        registry.register_format(Impostor())


def test_the_header_read_is_bounded_before_anything_that_long_is_read() -> None:
    model = to_safetensors({"w": np.ones((64, 64), np.float32)})
    log: list[tuple[int, int]] = []
    with pytest.raises(HeaderTooLarge):
        registry.read_layout("safetensors", reads(model, log), len(model), max_header_bytes=16)
    assert log == [(0, 8)]
    log.clear()
    registry.read_layout("safetensors", reads(model, log), len(model), max_header_bytes=LIMIT)
    assert len(log) == 2 and all(end <= 8 + len(model) - 64 * 64 * 4 for _, end in log)


def test_a_layout_that_does_not_tile_its_file_is_a_bug() -> None:
    with pytest.raises(InternalError):
        FileLayout("blob", 10, (opaque(0, 0, 4), opaque(1, 5, 5)), None)
    with pytest.raises(InternalError):
        FileLayout("blob", 10, (opaque(0, 0, 4),), None)


shapes = st.lists(st.tuples(st.integers(0, 5), st.integers(1, 7)), min_size=0, max_size=5)


@given(shapes, st.sampled_from(["F32", "BF16"]))
def test_safetensors_layout_rebuilds_the_file_and_lists_its_tensors(dims: list[tuple[int, int]], dtype: str) -> None:
    weights = {f"t{i}": np.full(shape, i, np.float32) for i, shape in enumerate(dims)}
    data = to_safetensors(weights, dtype)
    layout = registry.read_layout("safetensors", reads(data), len(data), max_header_bytes=LIMIT)
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    assert layout.segments[0].name == HEADER_SEGMENT and layout.tensors is not None
    assert [(t.name, t.shape, t.dtype) for t in layout.tensors] == [
        (f"t{i}", shape, DTYPES[dtype]) for i, shape in enumerate(dims)]  # fmt: skip
    for tensor, segment in zip(layout.tensors, layout.segments[1:], strict=True):
        assert (tensor.offset, tensor.nbytes) == (segment.offset, segment.length)


def test_blob_layout_is_one_segment_and_refusals_are_user_errors() -> None:
    layout = registry.read_layout("blob", reads(b"abc"), 3, max_header_bytes=LIMIT)
    assert [(s.offset, s.length, s.dtype.name) for s in layout.segments] == [(0, 3, "U8")]
    with pytest.raises(SafetensorsError):
        registry.read_layout("safetensors", reads(b"abc"), 3, max_header_bytes=LIMIT)
