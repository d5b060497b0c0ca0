"""GGUF: real files from the `gguf` writer rebuild byte-exact with their tensors typed; every broken
rule of the format is its own error."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from storage.app.hub import Hub
from storage.catalog import plans
from storage.catalog.models import Frame, Tensor
from storage.core.errors import InvalidInput
from storage.core.formats import gguf as g
from storage.core.formats import registry
from storage.core.formats.base import FileLayout
from storage.core.frames import read_frame_header
from storage.core.segments import HEADER_SEGMENT
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.ingest import IngestResult, run_ingest

gguf = pytest.importorskip("gguf")
quants = pytest.importorskip("gguf.quants")
T = gguf.GGMLQuantizationType

LIMIT = 1 << 24


def write(path: Path, tensors: dict[str, np.ndarray | tuple[np.ndarray, object]], *, alignment: int | None = None,
          metadata: bool = True, vocab: int = 0) -> bytes:  # fmt: skip
    """A file made by the real writer; a (bytes array, ggml type) value is a pre-quantized tensor."""
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    if metadata:
        writer.add_uint32("llama.block_count", 2)
        writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", "", *(f"tok{i}" for i in range(vocab))])
        if vocab:  # one string longer than the first read steps
            writer.add_string("test.long", "x" * 10_000)
        writer.add_array("test.nested", [[1, 2, 3], [4]])
        writer.add_float64("test.f64", 0.5)
        writer.add_bool("test.flag", True)
    for name, value in tensors.items():
        if isinstance(value, tuple):
            writer.add_tensor(name, value[0], raw_dtype=value[1])
        else:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def layout_of(data: bytes, *, limit: int = LIMIT, max_tensors: int = 1000) -> FileLayout:
    return g.GgufFormat().layout(lambda a, b: data[a:b], len(data), max_header_bytes=limit, max_tensors=max_tensors)


def detected(data: bytes) -> str:
    return registry.detect_format(lambda a, b: data[a:b], len(data), max_header_bytes=LIMIT, max_tensors=1000).format_id


def by_name(layout: FileLayout) -> dict[str | None, tuple[int, int, str, tuple[int, ...]]]:
    return {s.name: (s.offset, s.end, s.dtype.name, s.shape) for s in layout.segments}


def test_a_real_file_keeps_float_tensors_typed_in_numpy_order_and_quantized_ones_opaque(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 64)).astype(np.float32)
    q = quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), T.Q8_0)
    data = write(tmp_path / "m.gguf", {"w": w, "h": w.astype(np.float16), "q": (q, T.Q8_0),
                                       "i": np.arange(5, dtype=np.int32)})  # fmt: skip
    assert detected(data) == "gguf"
    layout = layout_of(data)
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    seg = by_name(layout)
    assert layout.segments[0].name == HEADER_SEGMENT
    a, b, dtype, shape = seg["w"]
    assert (dtype, shape) == ("F32", (3, 64))  # ggml dims are (64, 3): reversed
    assert np.array_equal(np.frombuffer(data[a:b], np.float32).reshape(shape), w)
    assert seg["h"][2:] == ("F16", (3, 64)) and seg["i"][2:] == ("I32", (5,))
    a, b, dtype, shape = seg["q"]
    assert (dtype, shape) == ("U8", (4 * 2 * 34,)) and data[a:b] == q.tobytes()
    assert layout.tensors is not None
    assert sorted(t.name for t in layout.tensors) == ["h", "i", "w"]  # quantized blocks are no tensors


def test_bf16_and_every_quantized_type_the_writer_makes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    tensors: dict[str, np.ndarray | tuple[np.ndarray, object]] = {
        "bf": (quants.quantize(x, T.BF16), T.BF16)
    }
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q6_K):
        try:
            tensors[qtype.name] = (quants.quantize(x, qtype), qtype)
        except NotImplementedError:
            continue
    data = write(tmp_path / "q.gguf", tensors)
    seg = by_name(layout_of(data))
    assert seg["bf"][2:] == ("BF16", (2, 256))
    for name in tensors.keys() - {"bf"}:
        _, block, block_bytes, _ = next(v for v in g.GGML_TYPES.values() if v[0] == name)
        assert seg[name][2:] == ("U8", (2 * 256 // block * block_bytes,))


def test_a_v2_file_is_the_v3_layout_with_another_version(tmp_path: Path) -> None:
    data = write(tmp_path / "m.gguf", {"w": np.ones((2, 8), np.float32)})
    assert struct.unpack_from("<I", data, 4)[0] == 3
    v2 = data[:4] + struct.pack("<I", 2) + data[8:]
    assert detected(v2) == "gguf"
    assert layout_of(v2).segments == layout_of(data).segments


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shapes=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), min_size=0, max_size=5),
    kinds=st.lists(st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "I16", "I64", "Q8_0", "Q4_0"]), min_size=5,
                   max_size=5),
    alignment=st.sampled_from([None, 1, 8, 64, 256]),
)  # fmt: skip
def test_any_file_the_writer_makes_rebuilds_and_types_its_tensors(
    tmp_path: Path, shapes: list[tuple[int, int]], kinds: list[str], alignment: int | None
) -> None:
    rng = np.random.default_rng(2)
    tensors: dict[str, np.ndarray | tuple[np.ndarray, object]] = {}
    for i, (rows, blocks) in enumerate(shapes):
        x = rng.standard_normal((rows, 32 * blocks)).astype(np.float32)
        kind = kinds[i]
        if kind in ("Q8_0", "Q4_0", "BF16"):
            tensors[f"t{i}"] = (quants.quantize(x, T[kind]), T[kind])
        else:
            np_type = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
                       "I64": np.int64}[kind]  # fmt: skip
            tensors[f"t{i}"] = x.astype(np_type)
    data = write(tmp_path / "h.gguf", tensors, alignment=alignment, metadata=bool(len(shapes) % 2))
    layout = layout_of(data)
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    seg = by_name(layout)
    for i, (rows, blocks) in enumerate(shapes):
        a, b, dtype, shape = seg[f"t{i}"]
        value = tensors[f"t{i}"]
        raw = value[0] if isinstance(value, tuple) else value
        assert data[a:b] == raw.tobytes()
        if kinds[i] in ("Q8_0", "Q4_0"):
            assert dtype == "U8"
        else:
            assert (dtype, shape) == (kinds[i], (rows, 32 * blocks))
        assert a % (alignment or 32) == layout.segments[0].end % (alignment or 32) == 0


# Hostile files, built field by field: each breaks exactly one rule.


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, vtype: int, value: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + value


def info(name: str | bytes, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    dims_bytes = b"".join(struct.pack("<Q", d) for d in dims)
    return s(name) + struct.pack("<I", len(dims)) + dims_bytes + struct.pack("<IQ", ggml_type, offset)


def build(kvs: list[bytes], infos: list[bytes], data: bytes = b"", *, version: int = 3, alignment: int = 32,
          n_tensors: int | None = None, n_kv: int | None = None) -> bytes:  # fmt: skip
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)  # fmt: skip
    body = head + b"".join(kvs) + b"".join(infos)
    return body + b"\0" * (-len(body) % alignment) + data




def many_nested() -> bytes:
    """One more empty array inside an array than a file may hold (12 MB: built only when run)."""
    return struct.pack("<IQ", 9, g.MAX_NESTED_ARRAYS + 1) + struct.pack("<IQ", 4, 0) * (g.MAX_NESTED_ARRAYS + 1)


STRINGS_PAST_END = struct.pack("<IQ", 8, 2) + s("x") + struct.pack("<Q", 99)
GOOD = build([kv("a", 4, struct.pack("<I", 7))], [info("w", (4,))], b"\0" * 16)

HOSTILE: list[tuple[str, Callable[[], bytes], type[InvalidInput]]] = [
    ("bad magic", lambda: b"GGUG" + GOOD[4:], g.BadMagic),
    ("version 1", lambda: build([], [], version=1), g.UnsupportedVersion),
    ("big-endian", lambda: build([], [], version=3 << 24), g.UnsupportedVersion),
    ("truncated", lambda: GOOD[:30], g.Truncated),
    ("tensor count", lambda: build([], [], n_tensors=1001), g.TooManyTensors),
    ("tensor count past the file", lambda: build([], [], n_tensors=999), g.Truncated),
    ("kv count", lambda: build([], [], n_kv=1 << 40), g.TooManyKeys),
    ("kv count past the file", lambda: build([], [], n_kv=5), g.Truncated),
    ("string past end", lambda: build([s("a")[:8].replace(b"\1", b"\xff") + b"a"], []), g.StringTooLong),
    ("key not utf-8", lambda: build([kv("a", 0, b"\0").replace(b"a", b"\xff", 1)], []), g.NotUtf8),
    ("unknown value type", lambda: build([kv("a", 13, b"\0" * 8)], []), g.UnknownValueType),
    ("unknown array type", lambda: build([kv("a", 9, struct.pack("<IQ", 99, 1))], []), g.UnknownValueType),
    ("array too long", lambda: build([kv("a", 9, struct.pack("<IQ", 4, 1 << 50))], []), g.ArrayTooLong),
    ("nested too deep", lambda: build([kv("a", 9, struct.pack("<IQ", 9, 1) * 20)], []), g.NestedTooDeep),
    ("array string past end", lambda: build([kv("a", 9, STRINGS_PAST_END)], []), g.StringTooLong),
    ("nested arrays", lambda: build([kv("a", 9, many_nested())], []), g.TooManyNestedArrays),
    ("duplicate key", lambda: build([kv("a", 0, b"\0"), kv("a", 0, b"\0")], []), g.DuplicateKey),
    ("alignment type", lambda: build([kv("general.alignment", 10, b"\0" * 8)], []), g.BadAlignment),
    ("alignment zero", lambda: build([kv("general.alignment", 4, b"\0" * 4)], []), g.BadAlignment),
    ("alignment not 2^k", lambda: build([kv("general.alignment", 4, struct.pack("<I", 24))], []), g.BadAlignment),
    ("too many dims", lambda: build([], [info("w", (1, 1, 1, 1, 1))], b"\0" * 32), g.TooManyDims),
    ("unknown ggml type", lambda: build([], [info("w", (4,), 4)], b"\0" * 32), g.UnknownGgmlType),
    ("duplicate tensor", lambda: build([], [info("w", (1,)), info("w", (1,), offset=32)], b"\0" * 64),
     g.DuplicateTensor),
    ("partial block", lambda: build([], [info("w", (33, 2), 8)], b"\0" * 256), g.TensorSizeMismatch),
    ("huge dims", lambda: build([], [info("w", (1 << 62, 1 << 62))], b""), g.TensorTooLarge),
    ("misaligned", lambda: build([], [info("w", (1,), offset=4)], b"\0" * 64), g.MisalignedTensor),
    ("out of bounds", lambda: build([], [info("w", (5,))], b"\0" * 16), g.TensorOutOfBounds),
    ("overlap", lambda: build([], [info("w", (16,)), info("v", (1,), offset=32)], b"\0" * 96),
     g.OverlappingTensors),
    ("header past limit", lambda: build([kv("a", 8, s("x" * (LIMIT + 10)))], []), g.HeaderTooLarge),
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


def test_the_hostile_builder_makes_valid_files_when_no_rule_is_broken() -> None:
    layout = layout_of(GOOD)
    assert [(s.name, s.dtype.name, s.shape) for s in layout.segments] == [
        (HEADER_SEGMENT, "U8", (96,)), ("w", "F32", (4,))
    ]  # fmt: skip


def test_header_reads_stay_near_the_header_and_skip_tensor_data(tmp_path: Path) -> None:
    data = write(tmp_path / "big.gguf", {"w": np.ones((256, 1024), np.float32)}, vocab=20_000)
    reads: list[tuple[int, int]] = []

    def read(a: int, b: int) -> bytes:
        reads.append((a, b))
        return data[a:b]

    layout = g.GgufFormat().layout(read, len(data), max_header_bytes=LIMIT)
    header = layout.segments[0].length
    assert header > 200_000 and layout.segments[1].length == 1 << 20
    assert sum(b - a for a, b in reads) <= header + (64 << 10) and len(reads) <= 20


# End to end on a hub: tensors stored once whatever container holds them.


def ingested(hub: Hub, repo: str, files: dict[str, bytes], *, declared_base: str | None = None) -> list[IngestResult]:
    results = [run_ingest(hub, job) for job in push(hub, repo, files, declared_base=declared_base)]
    return [r for r in results if r is not None]


def to_gguf(path: Path, weights: dict[str, np.ndarray]) -> bytes:
    return write(path, dict(weights.items()))


def test_a_gguf_beside_its_safetensors_twin_stores_only_its_header(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    weights = make_weights(3)
    ingested(hub, "org/m", {"model.safetensors": to_safetensors(weights)})
    data = to_gguf(tmp_path / "m.gguf", weights)
    (result,) = ingested(hub, "org/m-gguf", {"model.gguf": data})
    assert result.deduplicated_tensors >= len(weights)
    assert result.encoded_bytes < 0.02 * len(data)
    sha = hashlib.sha256(data).hexdigest()
    assert hub.file_info(sha).kind == "gguf"
    assert read_all(hub, sha) == data
    assert read_all(hub, sha, 100, 5000) == data[100:5000]


def test_quantized_ggufs_sharing_tensors_store_them_once(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    weights = make_weights(4)
    q8 = {name: (quants.quantize(w, T.Q8_0), T.Q8_0) for name, w in weights.items() if w.shape[-1] % 32 == 0}
    first = write(tmp_path / "a.gguf", dict(q8.items()))
    # The second variant requantizes one tensor (as a Q4_K_M and a Q4_K_S differ on some layers).
    changed = "layer.1.mlp.weight"
    second_q8 = {**q8, changed: (quants.quantize(weights[changed] * 1.01, T.Q8_0), T.Q8_0)}
    second = write(tmp_path / "b.gguf", dict(second_q8.items()))
    (a,) = ingested(hub, "org/q-a", {"model-Q8_0.gguf": first})
    (b,) = ingested(hub, "org/q-b", {"model-Q8_0.gguf": second})
    assert a.encoded_bytes > 0.5 * len(first)  # quantized bytes barely compress alone
    assert b.new_tensors <= 3  # the changed tensor, and the header (its padding spans dedup)
    assert b.encoded_bytes < 1.1 * second_q8[changed][0].nbytes + 0.02 * len(second)
    for data in (first, second):
        assert read_all(hub, hashlib.sha256(data).hexdigest()) == data
    # Each quantized tensor is stored as bytes: its frames code U8 words, never float planes.
    with hub.session() as session:
        for raw, _ in second_q8.values():
            frames = session.scalars(select(Frame).where(Frame.tensor_id == hashlib.sha256(raw.tobytes()).hexdigest()))
            blobs = [hub.store.get(f.object_key, f.object_offset, f.object_offset + f.object_length) for f in frames]
            headers = [read_frame_header(blob) for blob in blobs]
            assert headers and all(h.dtype == "U8" and h.base_dtype is None for h in headers)


@pytest.mark.slow
def test_the_dev_corpus_model_as_gguf_adds_under_two_percent(tmp_path: Path, local_store: ObjectStore) -> None:
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus:
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    from safetensors.numpy import load_file

    path = Path(corpus) / "minilm-fp32" / "base" / "model.safetensors"
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingested(hub, "org/minilm", {"model.safetensors": path.read_bytes()})
    data = to_gguf(tmp_path / "m.gguf", load_file(str(path)))
    (result,) = ingested(hub, "org/minilm-gguf", {"model.gguf": data})
    print(f"\nmodel.gguf: {len(data)} bytes, {result.encoded_bytes} stored: {result.encoded_bytes / len(data):.5f}")
    assert result.encoded_bytes < 0.02 * len(data)
    assert read_all(hub, hashlib.sha256(data).hexdigest()) == data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255), cut=st.booleans())
def test_damaged_files_are_refused_or_still_tile(tmp_path: Path, position: int, value: int, cut: bool) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    data = bytearray(write(tmp_path / "d.gguf", {"w": x, "q": (quants.quantize(x, T.Q8_0), T.Q8_0)}))
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


# A converter's renames: every name differs, six matrices share one shape, and the GGUF lists them in
# another order than the base, so neither names nor order can pair them; only their values can.
RENAMED_LAYOUT = {f"encoder.layer.{i}.attention.{part}.weight": (64, 64) for i in range(2)
                  for part in ("query", "key", "value")}
RENAMED_LAYOUT["embeddings.word_embeddings.weight"] = (300, 64)


def llama_cpp_name(hf_name: str) -> str:
    if hf_name.startswith("embeddings."):
        return "token_embd.weight"
    _, _, layer, _, part, _ = hf_name.split(".")
    return f"blk.{layer}.attn_{ {'query': 'q', 'key': 'k', 'value': 'v'}[part] }.weight"


def test_a_renamed_f16_gguf_is_cast_predicted_from_its_f32_base(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    base = make_weights(5, RENAMED_LAYOUT)
    ingested(hub, "org/base", {"model.safetensors": to_safetensors(base)})
    tuned = finetune(base, 6)
    renamed = {llama_cpp_name(name): tuned[name].astype(np.float16) for name in reversed(list(tuned))}
    data = write(tmp_path / "m.gguf", dict(renamed.items()))
    (result,) = ingested(hub, "org/tuned-gguf", {"model-f16.gguf": data})
    sha = hashlib.sha256(data).hexdigest()
    assert read_all(hub, sha) == data
    # Every tensor is coded against its own base tensor (through the cast), not a same-shaped neighbour.
    with hub.session() as s:
        base_ids = {seg.name: seg.tensor_id for seg in plans.segments(s, hub.file_info(
            hashlib.sha256(to_safetensors(base)).hexdigest()).sha256)}
        mine = {seg.name: seg.tensor_id for seg in plans.segments(s, sha) if seg.name in renamed}
        bases = {name: s.get(Tensor, tensor_id).base_tensor_id for name, tensor_id in mine.items()}
    assert bases == {llama_cpp_name(name): base_ids[name] for name in base}
    plain = sum(w.nbytes for w in renamed.values())
    assert result.encoded_bytes < 0.5 * plain


def test_a_renamed_gguf_pushed_before_its_declared_base_is_rebased_onto_the_right_tensors(
    tmp_path: Path, local_store: ObjectStore
) -> None:
    """The F16 export arrives first, declaring a base not yet on the hub, and is stored alone; when the
    F32 base arrives, the export is rebased and each renamed tensor is coded against its own counterpart
    (through the cast), never a same-shaped neighbour."""
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)
    base = make_weights(7, RENAMED_LAYOUT)
    renamed = {llama_cpp_name(name): w.astype(np.float16) for name, w in reversed(finetune(base, 8).items())}
    data = write(tmp_path / "m.gguf", renamed)
    ingested(hub, "org/tuned-gguf", {"model-f16.gguf": data}, declared_base="org/base")
    base_file = to_safetensors(base)
    ingested(hub, "org/base", {"model.safetensors": base_file})
    sha, base_sha = hashlib.sha256(data).hexdigest(), hashlib.sha256(base_file).hexdigest()
    assert read_all(hub, sha) == data and read_all(hub, base_sha) == base_file
    with hub.session() as s:
        mine = {seg.name: seg.tensor_id for seg in plans.segments(s, sha) if seg.name in renamed}
        theirs = {seg.name: seg.tensor_id for seg in plans.segments(s, base_sha) if seg.name in base}
        bases = {name: s.get(Tensor, tensor_id).base_tensor_id for name, tensor_id in mine.items()}
    assert bases == {llama_cpp_name(name): theirs[name] for name in base}
