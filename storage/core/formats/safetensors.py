"""The safetensors format, read as hostile input.

A file is an 8-byte little-endian length N, N bytes of UTF-8 JSON (the header), then the data section:
every tensor's bytes, back to back from offset 0, in the order of their `data_offsets`. Uploads come from
anyone, so every rule of the format is checked, each by its own exception, before a byte is trusted.

The header bytes are kept verbatim (whitespace, key order, padding) so that the file is rebuilt exactly
as `to_prefix()` followed by the tensors' bytes in offset order. Tensor data is read from a stream one
tensor (or one chunk) at a time: memory never holds the whole file.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange, TensorEntry
from storage.core.formats.registry import register_format
from storage.core.segments import HEADER_SEGMENT, Segment, opaque

FORMAT_ID = "safetensors"

# The reference implementation's limit; a header this size already means ~1M tensors.
MAX_HEADER_BYTES = 100_000_000
# Python ints never overflow, so a bound is enforced explicitly; the reference's own bound is usize bits,
# and numpy cannot address arrays past 2**63 bytes anyway.
MAX_TENSOR_BITS = 2**63
METADATA_KEY = "__metadata__"
_TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_LENGTH = struct.Struct("<Q")
_CLIP = 200  # characters of a hostile name or list shown in a message
# Only a \uD800-\uDFFF escape can put a lone surrogate in a parsed string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class Readable(Protocol):
    """What the readers need of a stream: a file, a socket's file, or a HashingReader around one."""

    def read(self, size: int = -1, /) -> bytes: ...


class SafetensorsError(InvalidInput):
    """invalid safetensors file: {detail}"""


class HeaderTooSmall(SafetensorsError):
    """file has {size} bytes, fewer than the 8 that hold the header length"""


class HeaderTooLarge(SafetensorsError):
    """header length {length} exceeds the limit of {limit} bytes"""


class HeaderTruncated(SafetensorsError):
    """header declares {length} bytes but only {available} follow the length prefix"""


class HeaderNotUtf8(SafetensorsError):
    """header is not valid UTF-8 at byte {position}: {reason}"""


class HeaderStart(SafetensorsError):
    """header must start with '{{' but starts with {start}"""


class HeaderNotJson(SafetensorsError):
    """header is not valid JSON: {reason}"""


class DuplicateKey(SafetensorsError):
    """header repeats the key {key} within one JSON object"""


class TooManyTensors(SafetensorsError):
    """header lists {count} tensors, more than the limit of {limit}"""


class InvalidMetadata(SafetensorsError):
    """__metadata__ must map strings to strings, but {problem}"""


class InvalidTensorEntry(SafetensorsError):
    """tensor {tensor}: entry must be an object with exactly dtype, shape, data_offsets, got {got}"""


class UnknownDtype(SafetensorsError):
    """tensor {tensor}: unknown dtype {dtype}"""


class InvalidShape(SafetensorsError):
    """tensor {tensor}: shape must be a list of non-negative integers, got {shape}"""


class InvalidDataOffsets(SafetensorsError):
    """tensor {tensor}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets}"""


class TensorTooLarge(SafetensorsError):
    """tensor {tensor}: dtype {dtype} with shape {shape} exceeds the limit of {limit} bits"""


class MisalignedTensor(SafetensorsError):
    """tensor {tensor}: dtype {dtype} with shape {shape} is {bits} bits, not a whole number of bytes"""


class TensorSizeMismatch(SafetensorsError):
    """tensor {tensor}: data_offsets [{start}, {end}] give {size} bytes but dtype {dtype} with shape {shape} needs {needed}"""  # noqa: E501


class OverlappingTensors(SafetensorsError):
    """tensor {tensor}: data_offsets [{start}, {end}] overlap tensor {previous}, which ends at {previous_end}"""


class DataHole(SafetensorsError):
    """tensor {tensor}: data_offsets [{start}, {end}] leave bytes [{previous_end}, {start}) that no tensor covers"""


class DataTruncated(SafetensorsError):
    """tensor {tensor}: data_offsets [{start}, {end}] reach past the end of the data section, which holds {available} bytes"""  # noqa: E501


class TrailingBytes(SafetensorsError):
    """tensors cover {covered} bytes of the data section but it holds {available}"""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    # Offsets within the data section, which starts right after the header.
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    header_bytes: bytes  # the N JSON bytes exactly as in the file
    metadata: Mapping[str, str] | None = field(hash=False)
    tensors: tuple[TensorInfo, ...]  # sorted by start, so in the order their bytes follow the header

    @property
    def data_offset(self) -> int:
        return _LENGTH.size + len(self.header_bytes)

    @property
    def data_size(self) -> int:
        return self.tensors[-1].end if self.tensors else 0

    @property
    def file_size(self) -> int:
        return self.data_offset + self.data_size

    def to_prefix(self) -> bytes:
        """The bytes before the data section: the length, then the header as it was."""
        return _LENGTH.pack(len(self.header_bytes)) + self.header_bytes


def header_length(first8: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    """N, from the first 8 bytes of a file."""
    if len(first8) < _LENGTH.size:
        raise HeaderTooSmall(size=len(first8))
    (length,) = _LENGTH.unpack_from(first8)
    if length > max_header_bytes:
        raise HeaderTooLarge(length=length, limit=max_header_bytes)
    return int(length)


def looks_like_safetensors(first_bytes: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES) -> bool:
    """A cheap sniff (the first few bytes suffice) to choose how to ingest a file; parsing decides."""
    if len(first_bytes) < _LENGTH.size + 2 or first_bytes[8:9] != b"{":
        return False
    (length,) = _LENGTH.unpack_from(first_bytes)
    if not 2 <= length <= max_header_bytes:
        return False
    after_brace = first_bytes[9 : _LENGTH.size + length].lstrip(b" \t\r\n")
    return after_brace[:1] in (b"", b'"', b"}")


def parse_header(
    header_bytes: bytes, *, file_size: int | None = None, max_tensors: int = MAX_TENSORS
) -> SafetensorsHeader:
    """Check the N header bytes against every rule; with `file_size`, also that the file is exactly
    8 + N + the tensors' bytes. More than `max_tensors` tensors are refused before the JSON is decoded."""
    data_size = None
    if file_size is not None:
        data_size = file_size - _LENGTH.size - len(header_bytes)
        if data_size < 0:
            raise HeaderTruncated(length=len(header_bytes), available=max(0, file_size - _LENGTH.size))
    # Every tensor entry holds the key "data_offsets", and JSON escapes a quote inside a string, so
    # this count (a C scan, ~30 ms for 76 MB) bounds the tensors before ~0.9 KB of objects each is built.
    # Only a header naming the key more than `max_tensors` times outside tensor entries is over-counted.
    declared = bytes(header_bytes).count(b'"data_offsets"')
    if declared > max_tensors:
        raise TooManyTensors(count=declared, limit=max_tensors)
    document = _decode_json(header_bytes)
    metadata: Mapping[str, str] | None = None
    tensors = []
    for name, entry in document.items():
        if name == METADATA_KEY:
            metadata = _check_metadata(entry)
        else:
            tensors.append(_check_tensor(name, entry))
    if len(tensors) > max_tensors:
        raise TooManyTensors(count=len(tensors), limit=max_tensors)
    # Stable: empty tensors sharing one offset keep their JSON order.
    tensors.sort(key=lambda t: (t.start, t.end))
    _check_layout(tensors, data_size)
    return SafetensorsHeader(bytes(header_bytes), metadata, tuple(tensors))


def read_header(
    stream: Readable, *, max_header_bytes: int = MAX_HEADER_BYTES, file_size: int | None = None,
    max_tensors: int = MAX_TENSORS,
) -> SafetensorsHeader:
    """Read and check the header; leaves `stream` at the start of the data section."""
    length = header_length(_read_exact(stream, _LENGTH.size), max_header_bytes=max_header_bytes)
    if file_size is not None and file_size - _LENGTH.size < length:
        # Refuse before reading (or allocating) a length the file cannot hold.
        raise HeaderTruncated(length=length, available=max(0, file_size - _LENGTH.size))
    header_bytes = _read_exact(stream, length)
    if len(header_bytes) < length:
        raise HeaderTruncated(length=length, available=len(header_bytes))
    return parse_header(header_bytes, file_size=file_size, max_tensors=max_tensors)


def iter_tensors(stream: Readable, header: SafetensorsHeader) -> Iterator[tuple[TensorInfo, bytes]]:
    """Each tensor with its bytes, in offset order, from a stream at the start of the data section.
    Holds one tensor at a time; for tensors too big for that, use `iter_tensor_chunks`."""
    for info in header.tensors:
        data = _read_exact(stream, info.nbytes)
        if len(data) < info.nbytes:
            _raise_truncated(info, len(data))
        yield info, data
    expect_end(stream, header)


def iter_tensor_chunks(stream: Readable, info: TensorInfo, chunk_bytes: int = 8 << 20) -> Iterator[bytes]:
    """One tensor's bytes in chunks of at most `chunk_bytes`, from a stream at the tensor's start."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    remaining = info.nbytes
    while remaining:
        chunk = _read_exact(stream, min(chunk_bytes, remaining))
        if not chunk:
            _raise_truncated(info, info.nbytes - remaining)
        remaining -= len(chunk)
        yield chunk


def expect_end(stream: Readable, header: SafetensorsHeader) -> None:
    """After the last tensor has been read: the file must end here."""
    if stream.read(1):
        raise TrailingBytes(covered=header.data_size, available=f"more than {header.data_size}")


def _decode_json(header_bytes: bytes) -> dict[str, Any]:
    try:
        text = bytes(header_bytes).decode("utf-8")
    except UnicodeDecodeError as error:
        raise HeaderNotUtf8(position=error.start, reason=error.reason) from None
    if not text.startswith("{"):
        raise HeaderStart(start=_clip(bytes(header_bytes[:8])))
    decoder = _decoder(negative_zero="-0" in text, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    try:
        document = decoder.decode(text)
    except RecursionError:
        raise HeaderNotJson(reason="nested too deeply") from None
    except ValueError as error:
        raise HeaderNotJson(reason=str(error)) from None
    assert isinstance(document, dict)  # a '{' that parsed to the end is an object
    return document


@functools.cache
def _decoder(*, negative_zero: bool, surrogates: bool) -> json.JSONDecoder:
    """The strict decoder; the hooks that cost a Python call per key or per integer are only installed
    when the text holds what they look for (a header of 200k tensors parses twice as fast without)."""
    return json.JSONDecoder(
        object_pairs_hook=_unique_pairs_in_utf8 if surrogates else _unique_pairs,
        parse_constant=_reject_constant,
        parse_int=_parse_int if negative_zero else None,
    )


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key=_clip(key))
            seen.add(key)
    return document


def _unique_pairs_in_utf8(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        _check_unicode(key)
    return _unique_pairs(pairs)


def _check_unicode(text: str) -> None:
    # Python's JSON accepts lone surrogate escapes ("\ud800"); JSON proper and the reference do not,
    # and such a name could not be stored as UTF-8 later.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HeaderNotJson(reason=f"string {_clip(text)} holds a lone surrogate") from None


def _reject_constant(name: str) -> Any:
    raise HeaderNotJson(reason=f"{name} is not a JSON value")


def _parse_int(literal: str) -> int | float:
    # "-0" is an integer to Python but a float to the reference; a float is then rejected wherever it is.
    return -0.0 if literal == "-0" else int(literal)


def _check_metadata(entry: Any) -> Mapping[str, str] | None:
    if entry is None:  # the reference's type is an optional map, so null means "none"
        return None
    if not isinstance(entry, dict):
        raise InvalidMetadata(problem=f"it is {_json_type(entry)}")
    for key, value in entry.items():
        if not isinstance(value, str):
            raise InvalidMetadata(problem=f"key {_clip(key)} holds {_json_type(value)}")
        _check_unicode(value)
    return MappingProxyType(entry)


def _check_tensor(name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise InvalidTensorEntry(tensor=_clip(name), got=_json_type(entry))
    if entry.keys() != _TENSOR_FIELDS:
        raise InvalidTensorEntry(tensor=_clip(name), got=f"keys {_clip(sorted(entry))}")
    dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise UnknownDtype(tensor=_clip(name), dtype=_clip(entry["dtype"]))
    shape, offsets = entry["shape"], entry["data_offsets"]
    if type(shape) is not list:
        raise InvalidShape(tensor=_clip(name), shape=_clip(shape))
    # One loop, no calls: a 100 MB header holds ~1M tensors. The bound is checked at every step, as the
    # reference does, so a hostile shape never costs big-int arithmetic.
    nelements, too_large = 1, False
    for dim in shape:
        if type(dim) is not int or dim < 0:  # bool is an int subclass, and is no count
            raise InvalidShape(tensor=_clip(name), shape=_clip(shape))
        if not too_large:
            nelements *= dim
            too_large = dim * dtype.bits > MAX_TENSOR_BITS or nelements * dtype.bits > MAX_TENSOR_BITS
    if not (
        type(offsets) is list
        and len(offsets) == 2
        and type(offsets[0]) is int
        and type(offsets[1]) is int
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise InvalidDataOffsets(tensor=_clip(name), offsets=_clip(offsets))
    start, end = offsets
    if too_large:
        raise TensorTooLarge(tensor=_clip(name), dtype=dtype.name, shape=_clip(shape), limit=MAX_TENSOR_BITS)
    needed = dtype.nbytes(nelements)
    if needed is None:
        bits = nelements * dtype.bits
        raise MisalignedTensor(tensor=_clip(name), dtype=dtype.name, shape=_clip(shape), bits=bits)
    if end - start != needed:
        raise TensorSizeMismatch(
            tensor=_clip(name), start=start, end=end, size=end - start, dtype=dtype.name, shape=_clip(shape),
            needed=needed,
        )  # fmt: skip
    return TensorInfo(name, dtype, tuple(shape), start, end)


def _check_layout(tensors: list[TensorInfo], data_size: int | None) -> None:
    """Sorted tensors must tile the data section from 0 with no overlap and no hole."""
    previous: TensorInfo | None = None
    for info in tensors:
        previous_end = previous.end if previous else 0
        if info.start < previous_end:
            assert previous is not None
            raise OverlappingTensors(
                tensor=_clip(info.name), start=info.start, end=info.end, previous=_clip(previous.name),
                previous_end=previous_end,
            )  # fmt: skip
        if info.start > previous_end:
            raise DataHole(tensor=_clip(info.name), start=info.start, end=info.end, previous_end=previous_end)
        previous = info
    if data_size is None:
        return
    for info in tensors:
        if info.end > data_size:
            raise DataTruncated(tensor=_clip(info.name), start=info.start, end=info.end, available=data_size)
    covered = previous.end if previous else 0
    if covered != data_size:
        raise TrailingBytes(covered=covered, available=data_size)


def _raise_truncated(info: TensorInfo, got: int) -> None:
    raise DataTruncated(tensor=_clip(info.name), start=info.start, end=info.end, available=info.start + got)


def _read_exact(stream: Readable, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (raw streams may return short reads)."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    remaining = size - len(data)
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number"}
    return "null" if value is None else names.get(type(value), "a number")


def _clip(value: Any) -> str:
    """A value from the header as a message shows it (names quoted as in Python, the rest as JSON), cut
    short: hostile names and lists may be megabytes long."""
    try:
        text = repr(value) if isinstance(value, str | bytes) else json.dumps(value)
    except (RecursionError, ValueError):
        text = "(nested too deeply to show)"
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


class SafetensorsFormat(FileFormat):
    """safetensors behind the format contract: the header segment verbatim, then each tensor in offset
    order (the format allows no bytes between or after them)."""

    format_id = FORMAT_ID
    parses_tensors = True
    probe_bytes = 64

    def recognise(self, head: bytes, size: int) -> bool:
        return looks_like_safetensors(head)

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        header = read_header_ranged(read, size, max_header_bytes=max_header_bytes, max_tensors=max_tensors)
        segments = [opaque(0, 0, header.data_offset, HEADER_SEGMENT)]
        entries = []
        for seq, t in enumerate(header.tensors, start=1):
            offset = header.data_offset + t.start
            segments.append(Segment(seq, offset, t.nbytes, t.name, t.dtype, t.shape))
            entries.append(TensorEntry(t.name, t.dtype, t.shape, offset, t.nbytes))
        return FileLayout(FORMAT_ID, size, tuple(segments), tuple(entries))


def read_header_ranged(
    read: ReadRange, size: int, *, max_header_bytes: int = MAX_HEADER_BYTES, max_tensors: int = MAX_TENSORS
) -> SafetensorsHeader:
    """The header of a `size`-byte file through two ranged reads (never the whole file), bounded by
    `max_header_bytes` before anything that long is read."""
    length = header_length(read(0, min(size, _LENGTH.size)), max_header_bytes=max_header_bytes)
    if size - _LENGTH.size < length:
        raise HeaderTruncated(length=length, available=max(0, size - _LENGTH.size))
    return parse_header(read(_LENGTH.size, _LENGTH.size + length), file_size=size, max_tensors=max_tensors)


register_format(SafetensorsFormat())
