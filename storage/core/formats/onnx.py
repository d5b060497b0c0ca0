"""ONNX models (a ModelProto in protobuf wire format), read as hostile input without running anything.

Protobuf has no magic, so a file is ONNX only if its structure says so: field 1 (ir_version, a varint
of a plausible value) first, then only ModelProto's own fields with their own wire types, exactly one
graph (field 7), and every field ending inside its message and the last one exactly at the end of the
file. A few bounded rules (varints of at most 10 bytes, no groups, no field 0) keep the walk safe.

Inside the graph, each initializer (GraphProto field 5, a TensorProto) is read for its dims (1),
data_type (2), name (8), raw_data (9), external_data (13) and data_location (14); the typed fields
(float_data and the like) are noted, never read. An initializer whose bytes are all in raw_data (not
external, no typed values) of a data type we have a dtype for becomes a tensor segment at the exact
offset of its raw bytes (ONNX stores raw_data little-endian, in row-major order of dims); everything else
(the rest of the protobuf, typed or external initializers, nodes, subgraphs' initializers) is opaque.
An external initializer's `external_data` entries (location, offset, length) are collected as they are,
never resolved here: storage/core/formats/onnx_data.py checks them and cuts the data file they name,
when ingest finds that file beside the model in the same revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange, TensorEntry
from storage.core.formats.cursor import Cursor
from storage.core.formats.registry import register_format
from storage.core.segments import HEADER_SEGMENT, Segment, opaque

FORMAT_ID = "onnx"
# IR versions exist from 1 (2017) to 12 (onnx 1.20); room for many more, but not any number.
MAX_IR_VERSION = 64
_CLIP = 200
# Fields walked per tensor the file may hold (max_tensors): each one costs ~2.4 us of Python, so a
# hostile 100 MB of 2-byte fields would take minutes; real models walk ~10 per initializer (its own
# fields, its graph field, a node or two), so 16 x 100,000 (~4 s at worst) refuses none.
FIELDS_PER_TENSOR = 16
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# ModelProto fields and their wire types (onnx.proto): ir_version, producer_name, producer_version,
# domain, model_version, doc_string, graph, opset_import, metadata_props, training_info, functions,
# configuration.
_MODEL_FIELDS = {1: _VARINT, 2: _LEN, 3: _LEN, 4: _LEN, 5: _VARINT, 6: _LEN, 7: _LEN, 8: _LEN, 14: _LEN,
                 20: _LEN, 25: _LEN, 26: _LEN}  # fmt: skip
_GRAPH = 7
_INITIALIZER = 5
# TensorProto fields read, and those holding typed values (float, int32, string, int64, double, uint64).
_DIMS, _DATA_TYPE, _NAME, _RAW, _EXTERNAL, _LOCATION = 1, 2, 8, 9, 13, 14
_TYPED = frozenset({4, 5, 6, 7, 10, 11})
# TensorProto.segment: the initializer holds one slice of a larger tensor, which `dims` describe.
_SEGMENT = 3
_SINGULAR = frozenset({_DATA_TYPE, _NAME, _RAW, _LOCATION})
_EXTERNAL_LOCATION = 1

# TensorProto.DataType -> our dtype. Sub-byte types (UINT4, INT4, FLOAT4E2M1) pack differently from
# ours and COMPLEX128 / STRING have no dtype: those stay opaque.
DATA_TYPES: dict[int, str] = {
    1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64", 9: "BOOL", 10: "F16", 11: "F64",
    12: "U32", 13: "U64", 14: "C64", 16: "BF16", 17: "F8_E4M3", 18: "F8_E4M3FNUZ", 19: "F8_E5M2",
    20: "F8_E5M2FNUZ", 24: "F8_E8M0",
}  # fmt: skip


class OnnxError(InvalidInput):
    """invalid ONNX model: {detail}"""


class NotOnnx(OnnxError):
    """not an ONNX model: {reason}"""


class Truncated(OnnxError):
    """file ends at {size} bytes, inside a {wanted}-byte field at {position}"""


class BadVarint(OnnxError):
    """varint at {position} runs past 10 bytes"""


class BadTag(OnnxError):
    """field at {position}: {reason}"""


class WrongWireType(OnnxError):
    """{message} field {field} at {position} has wire type {wire}, not {expected}"""


class FieldPastEnd(OnnxError):
    """field at {position} holds {length} bytes, past the end of its message at {end}"""


class GraphCount(OnnxError):
    """a model holds exactly one graph, this one {count}"""


class HeaderTooLarge(OnnxError):
    """protobuf structure outside tensor data exceeds the limit of {limit} bytes"""


class TooManyTensors(OnnxError):
    """graph holds more than {limit} initializers"""


class TooManyFields(OnnxError):
    """protobuf structure holds more than {limit} fields"""


class RepeatedField(OnnxError):
    """initializer at {position} repeats field {field}"""


class NameNotUtf8(OnnxError):
    """initializer name at {position} is not valid UTF-8"""


class DuplicateTensor(OnnxError):
    """initializer {tensor} is listed twice"""


class BadDims(OnnxError):
    """initializer {tensor}: dims {dims} are not non-negative"""


class RawSizeMismatch(OnnxError):
    """initializer {tensor}: raw_data holds {size} bytes but {dtype} with dims {dims} needs {needed}"""


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


class _Wire:
    """Protobuf wire-format reading on a bounded cursor."""

    def __init__(self, cursor: Cursor, max_fields: int) -> None:
        self.c = cursor
        self.fields_left = max_fields
        self.max_fields = max_fields

    def varint(self) -> int:
        at, value = self.c.pos, 0
        for shift in range(0, 70, 7):
            byte = self.c.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        raise BadVarint(position=at)

    def tag(self, end: int) -> tuple[int, int, int]:
        """(field number, wire type, position of the tag)."""
        at = self.c.pos
        self.fields_left -= 1
        if self.fields_left < 0:
            raise TooManyFields(limit=self.max_fields)
        key = self.varint()
        field, wire = key >> 3, key & 7
        if field == 0:
            raise BadTag(position=at, reason="field number 0")
        if wire not in (_VARINT, _I64, _LEN, _I32):
            raise BadTag(position=at, reason=f"wire type {wire} (groups and unknown types are not read)")
        if self.c.pos > end:
            raise FieldPastEnd(position=at, length=self.c.pos - at, end=end)
        return field, wire, at

    def length(self, at: int, end: int) -> int:
        """A length-delimited field's byte count, checked to end inside its message."""
        length = self.varint()
        if self.c.pos + length > end:
            raise FieldPastEnd(position=at, length=length, end=end)
        return length

    def skip(self, wire: int, at: int, end: int) -> None:
        if wire == _VARINT:
            self.varint()
            size = 0
        else:
            size = {_I64: 8, _I32: 4}.get(wire) or self.length(at, end)
        if self.c.pos + size > end:
            raise FieldPastEnd(position=at, length=size, end=end)
        self.c.skip(size)


@dataclass(frozen=True, slots=True)
class _Raw:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class External:
    """An initializer whose bytes live in an external data file: its `external_data` (key, value) entries
    as the file holds them, unchecked."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    entries: tuple[tuple[bytes, bytes], ...]


def _entry(w: _Wire, end: int) -> tuple[bytes, bytes]:
    """A StringStringEntryProto: key (1) and value (2); other fields are skipped."""
    key, value = b"", b""
    while w.c.pos < end:
        field, wire, at = w.tag(end)
        if field in (1, 2) and wire == _LEN:
            text = w.c.take(w.length(at, end))
            key, value = (text, value) if field == 1 else (key, text)
        else:
            w.skip(wire, at, end)
    return key, value


def _initializer(w: _Wire, end: int) -> _Raw | External | None:
    """The initializer's raw tensor, its external reference, or None when its bytes stay opaque."""
    start = w.c.pos
    dims: list[int] = []
    seen: set[int] = set()
    entries: list[tuple[bytes, bytes]] = []
    data_type, name, raw, location, typed, external = 0, "", None, 0, False, False
    while w.c.pos < end:
        field, wire, at = w.tag(end)
        if field in _SINGULAR:
            if field in seen:
                raise RepeatedField(position=start, field=field)
            seen.add(field)
        if field == _DIMS and wire == _VARINT:
            dims.append(w.varint())
        elif field == _DIMS and wire == _LEN:
            length = w.length(at, end)
            packed_end = w.c.pos + length
            while w.c.pos < packed_end:
                dims.append(w.varint())
            if w.c.pos != packed_end:
                raise FieldPastEnd(position=at, length=w.c.pos - at, end=packed_end)
        elif field == _DIMS:
            _expect(wire, _VARINT, "TensorProto", field, at)
        elif field in (_DATA_TYPE, _LOCATION):
            _expect(wire, _VARINT, "TensorProto", field, at)
            value = w.varint()
            data_type, location = (value, location) if field == _DATA_TYPE else (data_type, value)
        elif field == _NAME:
            _expect(wire, _LEN, "TensorProto", field, at)
            raw_name = w.c.take(w.length(at, end))
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                raise NameNotUtf8(position=at) from None
        elif field == _RAW:
            _expect(wire, _LEN, "TensorProto", field, at)
            size = w.length(at, end)
            raw = (w.c.pos, size)
            w.c.skip(size)
        elif field == _EXTERNAL and wire == _LEN:
            external = True
            length = w.length(at, end)
            entries.append(_entry(w, w.c.pos + length))
        else:
            typed = typed or field in _TYPED or field == _SEGMENT
            external = external or field == _EXTERNAL
            w.skip(wire, at, end)
    if w.c.pos != end:  # a varint ran past the message
        raise FieldPastEnd(position=start, length=w.c.pos - start, end=end)
    dtype_name = DATA_TYPES.get(data_type)
    if location == _EXTERNAL_LOCATION and raw is None and not typed and dtype_name is not None:
        if all(d < 1 << 63 for d in dims):  # negative dims: nothing to resolve, the bytes stay opaque
            return External(name, DTYPES[dtype_name], tuple(dims), tuple(entries))
        return None
    if raw is None or typed or external or location == _EXTERNAL_LOCATION or dtype_name is None:
        return None
    # int64 dims: a negative one is a 10-byte varint of 2**64 - |d|.
    if any(d >= 1 << 63 for d in dims):
        raise BadDims(tensor=_clip(name), dims=_clip([d - (1 << 64) if d >= 1 << 63 else d for d in dims]))
    dtype = DTYPES[dtype_name]
    count = 1
    for d in dims:
        count = min(count * d, 1 << 64)  # past any real size: a mismatch, without big-int arithmetic
    needed = dtype.nbytes(count)
    if needed != raw[1]:
        raise RawSizeMismatch(tensor=_clip(name), size=raw[1], dtype=dtype.name, dims=_clip(dims), needed=needed)
    return _Raw(name, dtype, tuple(dims), raw[0], raw[1])


def _expect(wire: int, expected: int, message: str, field: int, at: int) -> None:
    if wire != expected:
        raise WrongWireType(message=message, field=field, position=at, wire=wire, expected=expected)


def _graph(w: _Wire, end: int, found: list[_Raw | External], max_tensors: int, count: list[int]) -> None:
    while w.c.pos < end:
        field, wire, at = w.tag(end)
        if field != _INITIALIZER:
            w.skip(wire, at, end)  # nodes, inputs, outputs, subgraphs in node attributes: opaque
            continue
        _expect(wire, _LEN, "GraphProto", field, at)
        count[0] += 1
        if count[0] > max_tensors:
            raise TooManyTensors(limit=max_tensors)
        length = w.length(at, end)
        tensor_end = w.c.pos + length
        tensor = _initializer(w, tensor_end)
        if tensor is not None:
            found.append(tensor)


def _parse(read: ReadRange, size: int, max_header_bytes: int, max_tensors: int) -> list[_Raw | External]:
    cursor = Cursor(read, size, budget=max_header_bytes,
                    truncated=lambda position, wanted: Truncated(size=size, wanted=wanted, position=position),
                    over_budget=lambda limit: HeaderTooLarge(limit=limit))  # fmt: skip
    w = _Wire(cursor, FIELDS_PER_TENSOR * max_tensors)
    found: list[_Raw | External] = []
    graphs, count = 0, [0]
    first = True
    while cursor.pos < size:
        field, wire, at = w.tag(size)
        expected = _MODEL_FIELDS.get(field)
        if expected is None:
            raise NotOnnx(reason=f"field {field} at {at} is not a ModelProto field")
        _expect(wire, expected, "ModelProto", field, at)
        if first:
            if field != 1:
                raise NotOnnx(reason=f"the first field is {field}, not ir_version")
            ir_version = w.varint()
            if not 1 <= ir_version <= MAX_IR_VERSION:
                raise NotOnnx(reason=f"ir_version {ir_version} is not between 1 and {MAX_IR_VERSION}")
            first = False
        elif field == _GRAPH:
            graphs += 1
            if graphs > 1:
                raise GraphCount(count="holds more")
            length = w.length(at, size)
            graph_end = w.c.pos + length
            _graph(w, graph_end, found, max_tensors, count)
        else:
            w.skip(wire, at, size)
    if first:
        raise NotOnnx(reason="the file is empty")
    if graphs != 1:
        raise GraphCount(count="holds none")
    names: set[str] = set()
    for t in found:
        if not isinstance(t, _Raw):  # external names are checked where they are resolved
            continue
        if t.name in names:
            raise DuplicateTensor(tensor=_clip(t.name))
        names.add(t.name)
    return found


def _sniff(head: bytes) -> bool:
    """The head's fields are ModelProto's, ir_version first and plausible, as far as the head reaches."""
    if len(head) < 2 or head[0] != 0x08:
        return False
    pos, first = 0, True
    while pos < len(head):
        parsed = _head_varint(head, pos)
        if parsed is None:
            return True  # the head ends inside a tag
        key, pos = parsed
        field, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(field) != wire:
            return False
        if wire == _VARINT:
            parsed = _head_varint(head, pos)
            if parsed is None:
                return not first
            value, pos = parsed
            if first and not 1 <= value <= MAX_IR_VERSION:
                return False
        else:
            parsed = _head_varint(head, pos)
            if parsed is None:
                return True
            length, pos = parsed
            pos += length
        first = False
    return True


def _head_varint(head: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(head):
            return None
        byte = head[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    return None


class OnnxFormat(FileFormat):
    format_id = FORMAT_ID
    parses_tensors = True
    probe_bytes = 64

    def recognise(self, head: bytes, size: int) -> bool:
        return _sniff(head)

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        found = [t for t in _parse(read, size, max_header_bytes, max_tensors) if isinstance(t, _Raw)]
        segments: list[Segment] = []
        tensors: list[TensorEntry] = []
        position = 0
        for t in found:  # in file order: the walk is sequential
            if t.offset > position:
                name = HEADER_SEGMENT if not segments else None
                segments.append(opaque(len(segments), position, t.offset - position, name))
            segments.append(Segment(len(segments), t.offset, t.nbytes, t.name, t.dtype, t.shape))
            tensors.append(TensorEntry(t.name, t.dtype, t.shape, t.offset, t.nbytes))
            position = t.offset + t.nbytes
        if size > position or not segments:
            segments.append(opaque(len(segments), position, size - position, None if segments else HEADER_SEGMENT))
        return FileLayout(FORMAT_ID, size, tuple(segments), tuple(tensors))

    def externals(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> list[External]:
        """The model's initializers held in external data files, in file order (the same checked walk
        as `layout`: a model it refuses has none)."""
        return [t for t in _parse(read, size, max_header_bytes, max_tensors) if isinstance(t, External)]


register_format(OnnxFormat())
