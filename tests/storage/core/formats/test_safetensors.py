"""The safetensors parser: every rule with its exact message, byte-exact rebuilds of random files, the
reference implementation's agreement, a bounded fuzz run, and the real corpus."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import safetensors as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput
from storage.core.formats import safetensors as sf
from storage.core.hashing import HashingReader, Sha256Writer


def _file(header: Any, data: bytes = b"") -> bytes:
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def _entry(dtype: str, shape: list[Any], start: Any, end: Any) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def _parse(blob: bytes, *, file_size: int | None = -1) -> tuple[sf.SafetensorsHeader, list[bytes]]:
    """Header and tensor bytes, the way ingest reads them: one pass over a stream."""
    stream = io.BytesIO(blob)
    header = sf.read_header(stream, file_size=len(blob) if file_size == -1 else file_size)
    return header, [data for _, data in sf.iter_tensors(stream, header)]


A4 = _entry("U8", [4], 0, 4)


def _many(count: int) -> bytes:
    """A well-formed file of `count` one-byte tensors (the hostile probe sent 1,000,000)."""
    return _file({f"t{i}": _entry("U8", [1], i, i + 1) for i in range(count)}, bytes(count))


RULES: list[tuple[str, bytes, type[sf.SafetensorsError], str]] = [
    ("too-small", b"\x02\x00", sf.HeaderTooSmall, "file has 2 bytes, fewer than the 8 that hold the header length"),
    ("too-large", struct.pack("<Q", 100_000_001) + b"{}", sf.HeaderTooLarge,
     "header length 100000001 exceeds the limit of 100000000 bytes"),
    ("header-truncated", struct.pack("<Q", 50) + b"{}", sf.HeaderTruncated,
     "header declares 50 bytes but only 2 follow the length prefix"),
    ("not-utf8", _file(b'{"\xff": 1}'), sf.HeaderNotUtf8, "header is not valid UTF-8 at byte 2: invalid start byte"),
    ("start", _file(b" {}"), sf.HeaderStart, "header must start with '{' but starts with b' {}'"),
    ("not-json", _file(b'{"a": '), sf.HeaderNotJson,
     "header is not valid JSON: Expecting value: line 1 column 7 (char 6)"),
    ("duplicate", _file(b'{"a": {}, "a": {}}'), sf.DuplicateKey, "header repeats the key 'a' within one JSON object"),
    ("too-many-tensors", _many(100_001), sf.TooManyTensors,
     "header lists 100001 tensors, more than the limit of 100000"),
    ("metadata", _file({"__metadata__": {"format": "pt", "step": 3}}), sf.InvalidMetadata,
     "__metadata__ must map strings to strings, but key 'step' holds a number"),
    ("entry", _file({"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0], "x": 1}}), sf.InvalidTensorEntry,
     "tensor 'a': entry must be an object with exactly dtype, shape, data_offsets, got keys "
     "[\"data_offsets\", \"dtype\", \"shape\", \"x\"]"),
    ("dtype", _file({"a": _entry("f32", [1], 0, 4)}, bytes(4)), sf.UnknownDtype, "tensor 'a': unknown dtype 'f32'"),
    ("shape", _file({"a": _entry("U8", [2, -1], 0, 0)}), sf.InvalidShape,
     "tensor 'a': shape must be a list of non-negative integers, got [2, -1]"),
    ("offsets", _file({"a": _entry("U8", [0], 3, 2)}), sf.InvalidDataOffsets,
     "tensor 'a': data_offsets must be [begin, end] with 0 <= begin <= end, got [3, 2]"),
    ("too-big", _file({"a": _entry("U16", [2**32, 2**32, 0], 0, 0)}), sf.TensorTooLarge,
     "tensor 'a': dtype U16 with shape [4294967296, 4294967296, 0] exceeds the limit of 9223372036854775808 bits"),
    ("misaligned", _file({"a": _entry("F4", [3], 0, 2)}, bytes(2)), sf.MisalignedTensor,
     "tensor 'a': dtype F4 with shape [3] is 12 bits, not a whole number of bytes"),
    ("size", _file({"a.weight": _entry("F32", [3], 0, 10)}, bytes(10)), sf.TensorSizeMismatch,
     "tensor 'a.weight': data_offsets [0, 10] give 10 bytes but dtype F32 with shape [3] needs 12"),
    ("overlap", _file({"b": _entry("U8", [4], 2, 6), "a": A4}, bytes(6)), sf.OverlappingTensors,
     "tensor 'b': data_offsets [2, 6] overlap tensor 'a', which ends at 4"),
    ("hole", _file({"b": _entry("U8", [2], 6, 8), "a": A4}, bytes(8)), sf.DataHole,
     "tensor 'b': data_offsets [6, 8] leave bytes [4, 6) that no tensor covers"),
    ("data-truncated", _file({"a": A4}, bytes(3)), sf.DataTruncated,
     "tensor 'a': data_offsets [0, 4] reach past the end of the data section, which holds 3 bytes"),
    ("trailing", _file({"a": A4}, bytes(6)), sf.TrailingBytes,
     "tensors cover 4 bytes of the data section but it holds 6"),
]  # fmt: skip


@pytest.mark.parametrize(("blob", "error", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_has_its_exception_and_exact_message(blob: bytes, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        _parse(blob)
    assert type(caught.value) is error
    assert caught.value.message == message
    assert caught.value.status == 400


def test_every_rule_is_covered_above() -> None:
    assert {r[2] for r in RULES} == set(sf.SafetensorsError.__subclasses__())
    assert issubclass(sf.SafetensorsError, InvalidInput)


@pytest.mark.parametrize(
    ("header", "error", "message"),
    [
        (b"[]", sf.HeaderStart, "header must start with '{' but starts with b'[]'"),
        (b"", sf.HeaderStart, "header must start with '{' but starts with b''"),
        (b"{} x", sf.HeaderNotJson, "header is not valid JSON: Extra data: line 1 column 4 (char 3)"),
        (b'{"a": NaN}', sf.HeaderNotJson, "header is not valid JSON: NaN is not a JSON value"),
        (b'{"a": ' * 5000, sf.HeaderNotJson, "header is not valid JSON: nested too deeply"),
        (b'{"\\ud800": 1}', sf.HeaderNotJson, "header is not valid JSON: string '\\ud800' holds a lone surrogate"),
        (b'{"a": {"dtype": "U8", "dtype": "U8"}}', sf.DuplicateKey,
         "header repeats the key 'dtype' within one JSON object"),
        (b'{"__metadata__": []}', sf.InvalidMetadata, "__metadata__ must map strings to strings, but it is an array"),
        (b'{"a": [0, 4]}', sf.InvalidTensorEntry,
         "tensor 'a': entry must be an object with exactly dtype, shape, data_offsets, got an array"),
        (b'{"a": {"dtype": 32, "shape": [], "data_offsets": [0, 4]}}', sf.UnknownDtype, "tensor 'a': unknown dtype 32"),
        (b'{"a": {"dtype": "U8", "shape": [true], "data_offsets": [0, 1]}}', sf.InvalidShape,
         "tensor 'a': shape must be a list of non-negative integers, got [true]"),
        (b'{"a": {"dtype": "U8", "shape": [2.0], "data_offsets": [0, 2]}}', sf.InvalidShape,
         "tensor 'a': shape must be a list of non-negative integers, got [2.0]"),
        (b'{"a": {"dtype": "U8", "shape": [-0], "data_offsets": [0, 0]}}', sf.InvalidShape,
         "tensor 'a': shape must be a list of non-negative integers, got [-0.0]"),
        (b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 1]}}', sf.InvalidDataOffsets,
         "tensor 'a': data_offsets must be [begin, end] with 0 <= begin <= end, got [0, 1, 1]"),
        (b'{"a": {"dtype": "U8", "shape": [0, 4611686018427387904], "data_offsets": [0, 0]}}', sf.TensorTooLarge,
         "tensor 'a': dtype U8 with shape [0, 4611686018427387904] exceeds the limit of 9223372036854775808 bits"),
        (b'{"a": {"dtype": "F6_E2M3", "shape": [2], "data_offsets": [0, 2]}}', sf.MisalignedTensor,
         "tensor 'a': dtype F6_E2M3 with shape [2] is 12 bits, not a whole number of bytes"),
        (b'{"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}', sf.DataHole,
         "tensor 'a': data_offsets [1, 3] leave bytes [0, 1) that no tensor covers"),
        (b'{"' + b"n" * 300 + b'": 1}', sf.InvalidTensorEntry,
         f"tensor '{'n' * 196}...: entry must be an object with exactly dtype, shape, data_offsets, got a number"),
    ],
)  # fmt: skip
def test_more_violations_of_the_same_rules(header: bytes, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        sf.parse_header(header)
    assert type(caught.value) is error
    assert caught.value.message == message


def test_the_header_limit_is_configurable_and_checked_before_reading() -> None:
    blob = _file({"a": A4}, bytes(4))  # a 60-byte header
    with pytest.raises(sf.HeaderTooLarge, match=r"^header length 60 exceeds the limit of 59 bytes$"):
        sf.read_header(io.BytesIO(blob), max_header_bytes=59)
    assert sf.read_header(io.BytesIO(blob), max_header_bytes=60).data_offset == 68


def test_the_tensor_limit_is_configurable_and_checked_before_the_json_is_decoded() -> None:
    blob = _many(10)
    assert len(sf.read_header(io.BytesIO(blob), max_tensors=10).tensors) == 10
    with pytest.raises(sf.TooManyTensors, match=r"^header lists 10 tensors, more than the limit of 9$"):
        sf.read_header(io.BytesIO(blob), max_tensors=9)
    # Refused before decoding: JSON that would not even parse is refused for its count.
    broken = b'{"a": {"data_offsets": 1}, "b": {"data_offsets": 2}, '
    with pytest.raises(sf.TooManyTensors, match="lists 2 tensors, more than the limit of 1"):
        sf.parse_header(broken, max_tensors=1)


def test_a_stream_of_unknown_size_reports_truncation_and_trailing_bytes_as_it_reads() -> None:
    with pytest.raises(sf.DataTruncated) as caught:
        _parse(_file({"b": _entry("U8", [2], 4, 6), "a": A4}, bytes(5)), file_size=None)
    assert caught.value.message == (
        "tensor 'b': data_offsets [4, 6] reach past the end of the data section, which holds 5 bytes"
    )
    with pytest.raises(sf.TrailingBytes) as trailing:
        _parse(_file({"a": A4}, bytes(5)), file_size=None)
    assert trailing.value.message == "tensors cover 4 bytes of the data section but it holds more than 4"
    with pytest.raises(sf.HeaderTruncated, match=r"^header declares 50 bytes but only 3 follow"):
        _parse(struct.pack("<Q", 50) + b"{} ", file_size=None)


def test_empty_zero_dimensional_and_metadata_edge_cases_are_legal() -> None:
    header = {
        "__metadata__": None,
        "z": _entry("F32", [], 2, 6),
        "e2": _entry("F4", [0, 7], 2, 2),
        "first": _entry("BOOL", [2], 0, 2),
        "e1": _entry("C64", [3, 0], 6, 6),
    }
    parsed, data = _parse(_file(header, b"\x01\x00abcd"))
    assert parsed.metadata is None
    assert [t.name for t in parsed.tensors] == ["first", "e2", "z", "e1"]  # offset order; ties keep JSON order
    assert [t.shape for t in parsed.tensors] == [(2,), (0, 7), (), (3, 0)]
    assert data == [b"\x01\x00", b"", b"abcd", b""]
    header_size = len(json.dumps(header))
    assert (parsed.data_offset, parsed.data_size, parsed.file_size) == (8 + header_size, 6, 14 + header_size)
    empty, nothing = _parse(_file(b"{}       "))
    assert (empty.tensors, empty.metadata, nothing, empty.file_size) == ((), None, [], 17)


def test_names_that_trip_the_slow_decoder_paths_still_parse() -> None:
    # "-0" and a \uD83D\uDE00 escape (a valid surrogate pair) switch on the stricter JSON hooks.
    header = b'{"x-0": {"dtype": "I8", "shape": [-0e0], "data_offsets": [0, 0]}}'
    with pytest.raises(sf.InvalidShape):
        sf.parse_header(header)
    parsed = sf.parse_header(b'{"\\ud83d\\ude00-0": {"dtype": "I8", "shape": [0], "data_offsets": [0, 0]},'
                             b' "__metadata__": {"k": "\\uD83D\\uDE00"}}')  # fmt: skip
    assert [t.name for t in parsed.tensors] == ["\U0001f600-0"]
    assert parsed.metadata == {"k": "\U0001f600"}


def test_chunked_reads_are_bounded_and_detect_truncation() -> None:
    blob = _file({"a": _entry("U8", [10], 0, 10)}, bytes(range(10)))
    stream = io.BytesIO(blob)
    header = sf.read_header(stream)
    chunks = list(sf.iter_tensor_chunks(stream, header.tensors[0], 4))
    assert [len(c) for c in chunks] == [4, 4, 2] and b"".join(chunks) == bytes(range(10))
    sf.expect_end(stream, header)
    short = io.BytesIO(blob[:-3])
    with pytest.raises(sf.DataTruncated, match=r"which holds 7 bytes$"):
        list(sf.iter_tensor_chunks(short, sf.read_header(short).tensors[0], 4))


class _Trickle(io.RawIOBase):
    """A raw stream that returns at most 3 bytes per read, as sockets and pipes may."""

    def __init__(self, blob: bytes) -> None:
        self._blob = io.BytesIO(blob)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._blob.read(min(3, len(buffer)))
        buffer[: len(data)] = data
        return len(data)


def test_short_reads_from_raw_streams_are_completed() -> None:
    blob = _file({"a": _entry("F64", [2], 0, 16)}, bytes(range(16)))
    stream = _Trickle(blob)
    header = sf.read_header(stream)
    assert [data for _, data in sf.iter_tensors(stream, header)] == [bytes(range(16))]


def test_sniffing() -> None:
    assert sf.looks_like_safetensors(_file({"a": A4}, bytes(4))[:16])
    assert sf.looks_like_safetensors(_file(b"{ }"))
    for not_safetensors in (b"GGUF\x03\x00\x00\x00\x00", b"PK\x03\x04" + bytes(8), b'{"model_type": "bert"}',
                            _file(b"[]"), struct.pack("<Q", 10**9) + b'{"', _file(b"{x}"), b"\x02"):  # fmt: skip
        assert not sf.looks_like_safetensors(not_safetensors)


# --- random valid files ---------------------------------------------------------------------------------

_WHITESPACE = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def tensor_spec(draw: st.DrawFn) -> tuple[DType, list[int], bytes]:
    dtype = draw(st.sampled_from(list(DTYPES.values())))
    shape = draw(st.lists(st.integers(0, 5), max_size=4))
    if dtype.nbytes(math.prod(shape)) is None:
        shape.append(4)  # 4 elements of 4 or 6 bits end on a byte boundary
    nbytes = dtype.nbytes(math.prod(shape))
    return dtype, shape, draw(st.binary(min_size=nbytes, max_size=nbytes))


@st.composite
def safetensors_file(draw: st.DrawFn) -> tuple[bytes, dict[str, tuple[str, list[int], bytes]], dict | None]:
    names = draw(st.lists(st.text(max_size=8).filter(lambda n: n != "__metadata__"), max_size=6, unique=True))
    specs = {name: draw(tensor_spec()) for name in names}
    offsets, position = {}, 0
    for name in draw(st.permutations(names)):  # the data section's order, independent of the JSON's
        offsets[name] = (position, position + len(specs[name][2]))
        position += len(specs[name][2])
    metadata = draw(st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
    entries: list[tuple[str, Any]] = []
    for name in draw(st.permutations(names)):
        fields = {"dtype": specs[name][0].name, "shape": specs[name][1], "data_offsets": list(offsets[name])}
        entries.append((name, {key: fields[key] for key in draw(st.permutations(list(fields)))}))
    if metadata is not None:
        entries.insert(draw(st.integers(0, len(entries))), ("__metadata__", metadata))
    text = json.dumps(
        dict(entries),
        indent=draw(st.sampled_from([None, 0, 2, "\t", " \r"])),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", "\n: ")])),
        ensure_ascii=draw(st.booleans()),
    )
    header_bytes = (text + draw(_WHITESPACE) + " " * draw(st.integers(0, 7))).encode()
    data = b"".join(specs[name][2] for name in offsets)
    expected = {name: (dtype.name, shape, blob) for name, (dtype, shape, blob) in specs.items()}
    return _file(header_bytes, data), expected, metadata


@given(safetensors_file())
def test_random_valid_files_parse_and_rebuild_byte_exact(case: tuple[bytes, dict, dict | None]) -> None:
    blob, expected, metadata = case
    header, data = _parse(blob)
    assert header.to_prefix() + b"".join(data) == blob
    assert [t.start for t in header.tensors] == sorted(t.start for t in header.tensors)
    parsed = {t.name: (t.dtype.name, list(t.shape), d) for t, d in zip(header.tensors, data, strict=True)}
    assert parsed == expected
    assert (dict(header.metadata) if header.metadata is not None else None) == metadata
    assert header.file_size == len(blob)


@given(safetensors_file())
def test_the_reference_implementation_reads_random_files_as_we_do(case: tuple[bytes, dict, Any]) -> None:
    blob, expected, _ = case
    theirs = {name: (t["dtype"], t["shape"], bytes(t["data"])) for name, t in reference.deserialize(blob)}
    assert theirs == expected


def _torch_files() -> st.SearchStrategy[tuple[dict, dict | None]]:
    torch = pytest.importorskip("torch")
    from safetensors.torch import _TYPES

    @st.composite
    def tensor(draw: st.DrawFn) -> Any:
        name, torch_dtype = draw(st.sampled_from(sorted(_TYPES.items())))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        nbytes = DTYPES[name].nbytes(math.prod(shape))
        raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
        if torch_dtype == torch.bool:
            raw = bytes(b & 1 for b in raw)
        if not nbytes:
            return torch.empty(shape, dtype=torch_dtype)
        return torch.frombuffer(bytearray(raw), dtype=torch_dtype).reshape(shape)

    tensors = st.dictionaries(
        st.text(min_size=1, max_size=6).filter(lambda n: n != "__metadata__"), tensor(), max_size=5
    )
    metadata = st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)
    return st.tuples(tensors, metadata)


@given(st.deferred(_torch_files))
def test_files_the_reference_writes_parse_as_it_reads_them(case: tuple[dict, dict | None]) -> None:
    from safetensors.torch import save

    tensors, metadata = case
    blob = save(tensors, metadata=metadata)
    try:
        theirs = reference.deserialize(blob)
    except reference.SafetensorError:
        # safetensors 0.8 writes `{},"__metadata__":{}}` for no tensors with empty metadata, and cannot
        # read it back either.
        with pytest.raises(sf.HeaderNotJson):
            _parse(blob)
        return
    header, data = _parse(blob)
    ours = {t.name: (t.dtype.name, list(t.shape), d) for t, d in zip(header.tensors, data, strict=True)}
    assert ours == {name: (t["dtype"], t["shape"], bytes(t["data"])) for name, t in theirs}
    assert header.to_prefix() + b"".join(data) == blob


# --- fuzzing: hostile bytes must only ever raise SafetensorsError ------------------------------------

_JSONISH = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"-", b"0", b"9" * 30, b"1e9", b"-0",
                            b"null", b"true", b"NaN", b"\\u", b"\xff", b" ", b'"F4"', b'"__metadata__"',
                            b'"dtype"'])  # fmt: skip
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _must_only_raise_safetensors_errors(blob: bytes) -> None:
    try:
        header, data = _parse(blob)
    except sf.SafetensorsError:
        return
    # Accepted: it must rebuild exactly, and the reference must accept it and read the same tensors.
    assert header.to_prefix() + b"".join(data) == blob
    theirs = [(name, t["dtype"], t["shape"], bytes(t["data"])) for name, t in reference.deserialize(blob)]
    ours = [(t.name, t.dtype.name, list(t.shape), d) for t, d in zip(header.tensors, data, strict=True)]
    assert sorted(theirs) == sorted(ours)


_FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_FUZZ
@given(st.binary(max_size=64) | st.binary(max_size=64).map(_file))
def test_fuzz_random_bytes(blob: bytes) -> None:
    _must_only_raise_safetensors_errors(blob)


@_FUZZ
@given(
    safetensors_file(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), _JSONISH), min_size=1, max_size=4)
)
def test_fuzz_mutated_valid_files(case: tuple[bytes, Any, Any], edits: list[tuple[int, int, bytes]]) -> None:
    blob = bytearray(case[0])
    for where, drop, insert in edits:
        at = where % (len(blob) + 1)
        blob[at : at + drop] = insert if where % 5 else b""
    _must_only_raise_safetensors_errors(bytes(blob))


@_FUZZ
@given(safetensors_file(), st.data())
def test_fuzz_mutated_header_values(case: tuple[bytes, Any, Any], data: st.DataObject) -> None:
    blob = case[0]
    length = struct.unpack_from("<Q", blob)[0]
    document = json.loads(blob[8 : 8 + length])
    if not document:
        document["t"] = {}
    name = data.draw(st.sampled_from(sorted(document)))
    if isinstance(document[name], dict) and document[name] and data.draw(st.booleans()):
        document[name][data.draw(st.sampled_from(sorted(document[name])))] = data.draw(_JSON_VALUES)
    else:
        document[name] = data.draw(_JSON_VALUES)
    _must_only_raise_safetensors_errors(_file(document, blob[8 + length :]))


# --- the real corpus ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_corpus_file_rebuilds_byte_exact_through_the_stream() -> None:
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus:
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    paths = sorted(Path(corpus).rglob("*.safetensors"))
    assert paths, f"no .safetensors files under {corpus}"
    for path in paths:
        with path.open("rb") as file:
            reader = HashingReader(file)
            header = sf.read_header(reader, file_size=path.stat().st_size)
            rebuilt = Sha256Writer()
            rebuilt.write(header.to_prefix())
            for info in header.tensors:
                for chunk in sf.iter_tensor_chunks(reader, info, 1 << 20):
                    rebuilt.write(chunk)
            sf.expect_end(reader, header)
        with path.open("rb") as file:
            expected = hashlib.file_digest(file, "sha256").hexdigest()
        assert rebuilt.hexdigest() == reader.hexdigest() == expected, path
        assert rebuilt.size == path.stat().st_size
