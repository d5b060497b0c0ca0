"""ONNX: models made by the real `onnx` package and torch's exporter rebuild byte-exact with each raw
initializer a tensor at its exact offset; non-ONNX bytes are never claimed; every broken rule is its own
error."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.app.hub import Hub
from storage.core.errors import InvalidInput
from storage.core.formats import onnx as ox
from storage.core.formats import registry
from storage.core.formats.base import FileLayout
from storage.core.segments import HEADER_SEGMENT
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, push, read_all
from tests.models import make_weights, to_safetensors
from workers.jobs.ingest import IngestResult, run_ingest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

LIMIT = 1 << 20


def model(initializers: list[TensorProto], *, ir_version: int | None = None) -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], initializer=initializers,
    )  # fmt: skip
    m = helper.make_model(graph, producer_name="deltahub-test")
    if ir_version is not None:
        m.ir_version = ir_version
    return bytes(m.SerializeToString())


def layout_of(data: bytes, *, limit: int = LIMIT, max_tensors: int = 1000) -> FileLayout:
    return ox.OnnxFormat().layout(lambda a, b: data[a:b], len(data), max_header_bytes=limit, max_tensors=max_tensors)


def detected(data: bytes) -> str:
    return registry.detect_format(lambda a, b: data[a:b], len(data), max_header_bytes=LIMIT, max_tensors=1000).format_id


def sniffed(data: bytes) -> str:
    return registry.sniff_format(data[: registry.probe_bytes()], len(data)).format_id


def tensors(data: bytes, layout: FileLayout) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {s.name: (s.dtype.name, s.shape, data[s.offset : s.end]) for s in layout.segments
            if s.name not in (None, HEADER_SEGMENT)}  # fmt: skip


def test_raw_initializers_are_tensors_at_their_exact_bytes_and_typed_ones_stay_opaque() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    data = model([
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "i"),
        numpy_helper.from_array(w.astype(np.float16), "h"),
        numpy_helper.from_array(np.array(True), "flag"),
        helper.make_tensor("typed", TensorProto.FLOAT, [2], [1.0, 2.0]),  # float_data, not raw_data
    ])  # fmt: skip
    assert sniffed(data) == detected(data) == "onnx"
    layout = layout_of(data)
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    assert layout.segments[0].name == HEADER_SEGMENT
    found = tensors(data, layout)
    assert found["w"] == ("F32", (3, 4), w.tobytes())
    assert found["i"][:2] == ("I64", (2, 3)) and found["h"][:2] == ("F16", (3, 4))
    assert found["flag"] == ("BOOL", (), b"\x01")
    assert "typed" not in found
    assert layout.tensors is not None and [t.name for t in layout.tensors] == ["w", "i", "h", "flag"]


def test_a_model_exported_by_torch_lists_its_weights() -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 16),), buffer, dynamo=False)
    data = buffer.getvalue()
    assert detected(data) == "onnx"
    found = tensors(data, layout_of(data))
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    assert {k: (v[0], v[1]) for k, v in found.items()} == {k: ("F32", v.shape) for k, v in state.items()}
    for name, (_, _, raw) in found.items():
        assert raw == state[name].tobytes()


def test_external_data_initializers_stay_opaque_and_nothing_is_resolved(tmp_path: Path) -> None:
    w = np.ones((64, 64), np.float32)
    m = onnx.load_from_string(model([numpy_helper.from_array(w, "w"), numpy_helper.from_array(w[:1], "small")]))
    onnx.save_model(m, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=1024)
    data = (tmp_path / "m.onnx").read_bytes()
    found = tensors(data, layout_of(data))
    assert list(found) == ["small"]  # "w" lives in m.data, which this file only names


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(["float32", "float16", "float64", "int8", "uint8", "int32", "int64", "uint64"]),
                  st.lists(st.integers(0, 4), max_size=3)),
        max_size=6,
    ),
    ir_version=st.integers(3, 11),
)  # fmt: skip
def test_any_model_of_raw_initializers_rebuilds_with_each_tensor_in_place(
    specs: list[tuple[str, list[int]]], ir_version: int
) -> None:
    rng = np.random.default_rng(1)
    arrays = {f"t{i}": (rng.standard_normal(dims) * 50).astype(kind) for i, (kind, dims) in enumerate(specs)}
    data = model([numpy_helper.from_array(a, n) for n, a in arrays.items()], ir_version=ir_version)
    layout = layout_of(data)
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    found = tensors(data, layout)
    names = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "uint8": "U8",
             "int32": "I32", "int64": "I64", "uint64": "U64"}  # fmt: skip
    for n, a in arrays.items():
        assert found[n] == (names[str(a.dtype)], a.shape, a.tobytes())


@given(st.binary(max_size=300))
def test_random_bytes_are_never_parsed_into_tensors(data: bytes) -> None:
    try:
        layout = layout_of(data)
    except InvalidInput:
        return
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data


def test_other_formats_are_not_claimed() -> None:
    safetensors = to_safetensors({"w": np.ones((2, 2), np.float32)})
    assert sniffed(safetensors) == detected(safetensors) == "safetensors"
    for other in (b"", b"\x08", b"\x08\x03", b"PK\x03\x04" + b"\0" * 60, b'{"a": 1}', b"\x08\x03\x00\x00"):
        assert detected(other) != "onnx"


@settings(max_examples=60, deadline=None)
@given(pad=st.integers(0, 600))
def test_a_safetensors_file_whose_length_reads_as_protobuf_is_still_safetensors(pad: int) -> None:
    data = to_safetensors({"w": np.ones((2, 2), np.float32)}, metadata={"p": "x" * pad})
    assert sniffed(data) == detected(data) == "safetensors"
    with pytest.raises(InvalidInput):
        layout_of(data)


# Hostile models, each breaking one rule.


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def ld(field: int, body: bytes) -> bytes:
    return tag(field, 2) + varint(len(body)) + body


def tensor_proto(*fields: bytes) -> bytes:
    return ld(5, b"".join(fields))


def raw_f32(name: bytes = b"w", dims: tuple[int, ...] = (2,), raw: bytes = b"\0" * 8) -> list[bytes]:
    return [*(tag(1, 0) + varint(d) for d in dims), tag(2, 0) + varint(1), ld(8, name), ld(9, raw)]


def onnx_bytes(*graph_fields: bytes, head: bytes = tag(1, 0) + varint(8), tail: bytes = b"") -> bytes:
    return head + ld(7, b"".join(graph_fields)) + tail


GOOD = onnx_bytes(tensor_proto(*raw_f32()))

HOSTILE: list[tuple[str, Callable[[], bytes], type[InvalidInput]]] = [
    ("ir_version not first", lambda: ld(2, b"x") + GOOD, ox.NotOnnx),
    ("ir_version zero", lambda: onnx_bytes(head=tag(1, 0) + varint(0)), ox.NotOnnx),
    ("ir_version huge", lambda: onnx_bytes(head=tag(1, 0) + varint(1000)), ox.NotOnnx),
    ("unknown model field", lambda: GOOD + ld(9, b""), ox.NotOnnx),
    ("wrong wire type", lambda: GOOD + tag(5, 2) + varint(0), ox.WrongWireType),
    ("field zero", lambda: GOOD + b"\x00", ox.BadTag),
    ("group", lambda: GOOD + tag(2, 3), ox.BadTag),
    ("varint too long", lambda: GOOD + tag(5, 0) + b"\xff" * 11, ox.BadVarint),
    ("truncated", lambda: GOOD[:-3], ox.FieldPastEnd),
    ("truncated varint", lambda: GOOD + tag(5, 0) + b"\xff", ox.Truncated),
    ("no graph", lambda: tag(1, 0) + varint(8), ox.GraphCount),
    ("two graphs", lambda: GOOD + ld(7, b""), ox.GraphCount),
    ("initializer past graph", lambda: onnx_bytes(tag(5, 2) + varint(100)) + b"\0" * 100, ox.FieldPastEnd),
    ("initializer wire type", lambda: onnx_bytes(tag(5, 0) + varint(1)), ox.WrongWireType),
    ("too many initializers", lambda: onnx_bytes(*[tensor_proto()] * 1001), ox.TooManyTensors),
    ("too many fields", lambda: onnx_bytes(*[tag(2, 0) + b"\0"] * 16_001), ox.TooManyFields),
    ("repeated raw_data", lambda: onnx_bytes(tensor_proto(*raw_f32(), ld(9, b""))), ox.RepeatedField),
    ("name not utf-8", lambda: onnx_bytes(tensor_proto(*raw_f32(name=b"\xff"))), ox.NameNotUtf8),
    ("duplicate name", lambda: onnx_bytes(tensor_proto(*raw_f32()), tensor_proto(*raw_f32())), ox.DuplicateTensor),
    ("negative dim", lambda: onnx_bytes(tensor_proto(*raw_f32(dims=((1 << 64) - 2,)))), ox.BadDims),
    ("raw size", lambda: onnx_bytes(tensor_proto(*raw_f32(raw=b"\0" * 7))), ox.RawSizeMismatch),
    ("huge dims", lambda: onnx_bytes(tensor_proto(*raw_f32(dims=(1 << 62,) * 50))), ox.RawSizeMismatch),
    ("varint past its message", lambda: onnx_bytes(ld(5, tag(2, 0)) + b"\x81\x01"), ox.FieldPastEnd),
    ("dims wire type", lambda: onnx_bytes(tensor_proto(tag(1, 5) + b"\0" * 4)), ox.WrongWireType),
    ("structure past limit", lambda: onnx_bytes(tensor_proto(*raw_f32(name=b"x" * LIMIT))), ox.HeaderTooLarge),
    ("skipped fields cost nothing", lambda: GOOD + ld(6, b"x" * LIMIT) + b"\0", ox.BadTag),
]


@pytest.mark.parametrize(("rule", "make", "error"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_broken_rule_is_its_own_error_and_the_file_is_then_a_blob(
    rule: str, make: Callable[[], bytes], error: type[InvalidInput]
) -> None:
    data = make()
    with pytest.raises(error) as raised:
        layout_of(data)
    assert type(raised.value) is error and raised.value.status == 400
    assert detected(data) == "blob"


def test_the_hostile_builder_makes_valid_models_when_no_rule_is_broken() -> None:
    assert [(s.name, s.dtype.name, s.shape) for s in layout_of(GOOD).segments] == [
        (HEADER_SEGMENT, "U8", (len(GOOD) - 8,)), ("w", "F32", (2,))
    ]  # fmt: skip
    assert onnx.load_from_string(GOOD).graph.initializer[0].name == "w"


def test_structure_reads_are_bounded_and_skip_tensor_data() -> None:
    big = np.ones((512, 512), np.float32)
    data = model([numpy_helper.from_array(big, f"w{i}") for i in range(4)])
    reads: list[tuple[int, int]] = []

    def read(a: int, b: int) -> bytes:
        reads.append((a, b))
        return data[a:b]

    layout = ox.OnnxFormat().layout(read, len(data), max_header_bytes=LIMIT)
    assert len(layout.tensors or ()) == 4
    assert sum(b - a for a, b in reads) < 32 << 10  # of a 4 MiB file


# End to end on a hub: an ONNX export beside its safetensors twin.


def ingested(hub: Hub, repo: str, files: dict[str, bytes]) -> list[IngestResult]:
    results = [run_ingest(hub, job) for job in push(hub, repo, files)]
    return [r for r in results if r is not None]


def to_onnx(weights: dict[str, np.ndarray]) -> bytes:
    return model([numpy_helper.from_array(np.ascontiguousarray(w), name) for name, w in weights.items()])


def test_an_onnx_beside_its_safetensors_twin_stores_only_its_graph(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    weights = make_weights(5)
    ingested(hub, "org/m", {"model.safetensors": to_safetensors(weights)})
    data = to_onnx(weights)
    (result,) = ingested(hub, "org/m-onnx", {"model.onnx": data})
    assert result.deduplicated_tensors >= len(weights)
    assert result.encoded_bytes < 0.02 * len(data)
    sha = hashlib.sha256(data).hexdigest()
    assert hub.file_info(sha).kind == "onnx"
    assert read_all(hub, sha) == data
    assert read_all(hub, sha, 100, 5000) == data[100:5000]


@pytest.mark.slow
def test_the_dev_corpus_model_as_onnx_adds_under_two_percent(tmp_path: Path, local_store: ObjectStore) -> None:
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus:
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    from safetensors.numpy import load_file

    path = Path(corpus) / "minilm-fp32" / "base" / "model.safetensors"
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingested(hub, "org/minilm", {"model.safetensors": path.read_bytes()})
    data = to_onnx(load_file(str(path)))
    (result,) = ingested(hub, "org/minilm-onnx", {"model.onnx": data})
    print(f"\nmodel.onnx: {len(data)} bytes, {result.encoded_bytes} stored: {result.encoded_bytes / len(data):.5f}")
    assert result.encoded_bytes < 0.02 * len(data)
    assert read_all(hub, hashlib.sha256(data).hexdigest()) == data


def test_a_segmented_or_external_initializer_stays_opaque_even_with_raw_data() -> None:
    segmented = onnx_bytes(tensor_proto(*raw_f32(dims=(4,)), ld(3, tag(1, 0) + varint(0) + tag(2, 0) + varint(2))))
    external = onnx_bytes(tensor_proto(*raw_f32(), tag(14, 0) + varint(1)))
    for data in (segmented, external):
        layout = layout_of(data)
        assert layout.tensors == () and len(layout.segments) == 1


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255), cut=st.booleans())
def test_damaged_models_are_refused_or_still_tile(position: int, value: int, cut: bool) -> None:
    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    data = bytearray(model([numpy_helper.from_array(w, "w"), numpy_helper.from_array(w[0].astype(np.int64), "i")]))
    position %= len(data)
    if cut:
        del data[position:]
    else:
        data[position] = value
    try:
        layout = layout_of(bytes(data))
    except InvalidInput:
        return
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    for s in layout.segments:
        if s.name not in (None, HEADER_SEGMENT):  # a tensor is exactly its dtype and shape's bytes
            assert s.dtype.nbytes(int(np.prod(s.shape))) == s.length
