"""GGUF (llama.cpp's model file), versions 2 and 3, read as hostile input.

A file is the magic `GGUF`, a uint32 version, uint64 tensor and key/value counts, the key/value
metadata (a string key, a uint32 value type, the value: numbers, bools, strings, arrays of any of them,
arrays nested), one info per tensor (string name, uint32 n_dims, uint64 dims, uint32 ggml type, uint64
offset into the data section), padding to `general.alignment` (uint32, default 32), then the data
section: each tensor at its offset, each offset a multiple of the alignment. Version 3 only added
big-endian files (whose version field reads as a huge number little-endian, so they are refused as an
unknown version); v2 and v3 little-endian files are laid out identically. Version 1 (uint32 counts) is
long gone from the hubs and is not read.

Segments: the header, metadata and tensor infos as one opaque span, then each tensor in offset order
with any padding or gap between tensors as an opaque span. Plain numeric types (F32, F16, BF16, F64 and
the integers) are tensors of our dtypes, in numpy order: GGUF lists dims fastest first (ne[0] is the
innermost axis), so the shape is the dims reversed. Quantized block types (Q8_0, Q4_K, ...) are opaque
U8 spans that keep the tensor's name: identical quantized tensors dedup, and nothing treats their bytes
as floats (a U8 span is byte-grouped and entropy coded only).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange, TensorEntry
from storage.core.formats.cursor import Cursor
from storage.core.formats.registry import register_format
from storage.core.segments import HEADER_SEGMENT, Segment, opaque

FORMAT_ID = "gguf"
MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
ALIGNMENT_KEY = "general.alignment"
# ggml's GGML_MAX_DIMS: llama.cpp refuses more.
MAX_DIMS = 4
# Arrays inside arrays: the format allows them, real files nest at most one level.
MAX_NESTING = 8
# Arrays walked inside arrays, per file: each costs ~3 us of Python (a hostile 100 MB of empty nested
# arrays would be 8M of them); real files hold none or a handful.
MAX_NESTED_ARRAYS = 1_000_000
# Python ints never overflow; as in safetensors, a tensor past 2**63 bytes is refused.
MAX_TENSOR_BYTES = 2**63
# Bytes of a string array looked at per step.
STRING_CHUNK = 1 << 20
_CLIP = 200

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# Value types: fixed-size numbers by byte width, and the two variable ones.
_STRING, _ARRAY = 8, 9
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_UINT32 = 4
# Smallest encoding of one item of each variable type (an empty string; an empty array).
_MIN_ITEM = {_STRING: 8, _ARRAY: 12}

# ggml types as of gguf 0.19 (llama.cpp's ggml.h): id -> (name, elements per block, bytes per block,
# our dtype for plain numeric types or None for quantized blocks). Retired ids (4, 5, 31-33, 36-38) are
# unknown, as llama.cpp itself refuses them now.
GGML_TYPES: dict[int, tuple[str, int, int, str | None]] = {
    0: ("F32", 1, 4, "F32"), 1: ("F16", 1, 2, "F16"), 2: ("Q4_0", 32, 18, None), 3: ("Q4_1", 32, 20, None),
    6: ("Q5_0", 32, 22, None), 7: ("Q5_1", 32, 24, None), 8: ("Q8_0", 32, 34, None), 9: ("Q8_1", 32, 40, None),
    10: ("Q2_K", 256, 84, None), 11: ("Q3_K", 256, 110, None), 12: ("Q4_K", 256, 144, None),
    13: ("Q5_K", 256, 176, None), 14: ("Q6_K", 256, 210, None), 15: ("Q8_K", 256, 292, None),
    16: ("IQ2_XXS", 256, 66, None), 17: ("IQ2_XS", 256, 74, None), 18: ("IQ3_XXS", 256, 98, None),
    19: ("IQ1_S", 256, 50, None), 20: ("IQ4_NL", 32, 18, None), 21: ("IQ3_S", 256, 110, None),
    22: ("IQ2_S", 256, 82, None), 23: ("IQ4_XS", 256, 136, None), 24: ("I8", 1, 1, "I8"),
    25: ("I16", 1, 2, "I16"), 26: ("I32", 1, 4, "I32"), 27: ("I64", 1, 8, "I64"), 28: ("F64", 1, 8, "F64"),
    29: ("IQ1_M", 256, 56, None), 30: ("BF16", 1, 2, "BF16"), 34: ("TQ1_0", 256, 54, None),
    35: ("TQ2_0", 256, 66, None), 39: ("MXFP4", 32, 17, None), 40: ("NVFP4", 64, 36, None),
    41: ("Q1_0", 128, 18, None),
}  # fmt: skip


class GgufError(InvalidInput):
    """invalid GGUF file: {detail}"""


class BadMagic(GgufError):
    """file starts with {start}, not the GGUF magic"""


class UnsupportedVersion(GgufError):
    """GGUF version {version} is not supported (only little-endian versions 2 and 3 are)"""


class Truncated(GgufError):
    """file ends at {size} bytes, inside a {wanted}-byte field at {position}"""


class HeaderTooLarge(GgufError):
    """metadata and tensor infos exceed the limit of {limit} bytes"""


class TooManyTensors(GgufError):
    """header declares {count} tensors, more than the limit of {limit}"""


class TooManyKeys(GgufError):
    """header declares {count} metadata keys, more than {limit} bytes of header can hold"""


class ArrayTooLong(GgufError):
    """key {key}: array of {count} items cannot fit in the {available} header bytes left"""


class NestedTooDeep(GgufError):
    """key {key}: arrays nested more than {limit} deep"""


class TooManyNestedArrays(GgufError):
    """key {key}: more than {limit} arrays inside arrays"""


class UnknownValueType(GgufError):
    """key {key}: unknown value type {type}"""


class StringTooLong(GgufError):
    """string at {position} claims {length} bytes, past the end of the file"""


class NotUtf8(GgufError):
    """{what} at {position} is not valid UTF-8"""


class DuplicateKey(GgufError):
    """metadata repeats the key {key}"""


class BadAlignment(GgufError):
    """general.alignment must be a uint32 power of two, got {value}"""


class TooManyDims(GgufError):
    """tensor {tensor}: {n_dims} dims, more than {limit}"""


class UnknownGgmlType(GgufError):
    """tensor {tensor}: unknown ggml type {type}"""


class DuplicateTensor(GgufError):
    """tensor {tensor} is listed twice"""


class TensorSizeMismatch(GgufError):
    """tensor {tensor}: {ggml_type} packs {block} elements per block, but dims {dims} have {count} in the first"""


class TensorTooLarge(GgufError):
    """tensor {tensor}: dims {dims} exceed the limit of {limit} bytes"""


class MisalignedTensor(GgufError):
    """tensor {tensor}: offset {offset} is not a multiple of the alignment {alignment}"""


class TensorOutOfBounds(GgufError):
    """tensor {tensor}: bytes [{start}, {end}) reach past the end of the {size}-byte file"""


class OverlappingTensors(GgufError):
    """tensor {tensor}: bytes [{start}, {end}) overlap tensor {previous}, which ends at {previous_end}"""


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _CLIP else text[: _CLIP - 3] + "..."


class _Header:
    """The parse of everything before the data section; fields are filled as the cursor walks."""

    def __init__(self, cursor: Cursor, max_header_bytes: int) -> None:
        self.c = cursor
        self.limit = max_header_bytes
        self.nested_left = MAX_NESTED_ARRAYS

    def u32(self) -> int:
        return int(_U32.unpack(self.c.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.c.take(8))[0])

    def string_bytes(self) -> bytes:
        at = self.c.pos
        length = self.u64()
        if self.c.pos + length > self.c.size:
            raise StringTooLong(position=at, length=length)
        if self.c.pos + length > self.limit:
            raise HeaderTooLarge(limit=self.limit)
        return self.c.take(length)

    def text(self, what: str) -> str:
        at = self.c.pos
        raw = self.string_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NotUtf8(what=what, position=at) from None

    def fits(self, least: int, too_many: Callable[[], InvalidInput]) -> None:
        """Before any per-item work: `least` more bytes must fit in the header limit and in the file."""
        if self.c.pos + least > self.limit:
            raise too_many()
        if self.c.pos + least > self.c.size:
            raise Truncated(size=self.c.size, wanted=least, position=self.c.pos)

    def left(self) -> int:
        return max(0, min(self.limit, self.c.size) - self.c.pos)

    def skip_strings(self, count: int) -> None:
        """A vocabulary (hundreds of thousands of strings), walked a chunk at a time in one local loop:
        on 4M empty strings (a hostile 32 MB header) a cursor call per string took 6.8 s, this 1.2-4 s (a
        noisy shared 2-core machine)."""
        # Steps double, but stay near what the strings left need at the mean length so far: the last
        # one reads little past the array's end.
        step, walked, seen = 4096, 0, 0
        while count:
            available = min(self.c.size, self.limit) - self.c.pos
            need = count * (8 + walked // seen) * 5 // 4 if seen else step
            chunk = self.c.peek(min(available, step, max(4096, need))) if available >= 8 else b""
            step = min(STRING_CHUNK, step * 2)
            end, p = len(chunk), 0
            while count and p + 8 <= end:
                (length,) = _U64.unpack_from(chunk, p)
                if p + 8 + length > end:
                    break
                p += 8 + length
                count -= 1
                seen += 1
            walked += p
            if p:
                self.c.skip(p)
            else:  # a string longer than the chunk, or the end of the file or the limit
                self.string_bytes()
                count -= 1

    def skip_value(self, key: str, vtype: int, depth: int = 0) -> None:
        width = _FIXED.get(vtype)
        if width is not None:
            self.c.take(width)
        elif vtype == _STRING:
            self.string_bytes()
        elif vtype == _ARRAY:
            if depth >= MAX_NESTING:
                raise NestedTooDeep(key=_clip(key), limit=MAX_NESTING)
            item_type, count = self.u32(), self.u64()
            item_width = _FIXED.get(item_type)
            if item_width is None and item_type not in _MIN_ITEM:
                raise UnknownValueType(key=_clip(key), type=item_type)
            least = item_width if item_width is not None else _MIN_ITEM[item_type]
            if count * least > self.left():  # before any per-item work: a count cannot lie about memory
                raise ArrayTooLong(key=_clip(key), count=count, available=self.left())
            if item_width is not None:
                self.c.skip(count * item_width)  # never read: only the alignment's value is used
            elif item_type == _STRING:
                self.skip_strings(count)
            else:
                self.nested_left -= count
                if self.nested_left < 0:
                    raise TooManyNestedArrays(key=_clip(key), limit=MAX_NESTED_ARRAYS)
                for _ in range(count):
                    self.skip_value(key, item_type, depth + 1)
        else:
            raise UnknownValueType(key=_clip(key), type=vtype)


def _parse(read: ReadRange, size: int, max_header_bytes: int, max_tensors: int) -> FileLayout:
    def truncated(position: int, wanted: int) -> InvalidInput:
        return Truncated(size=size, wanted=wanted, position=position)

    cursor = Cursor(read, size, budget=max_header_bytes, truncated=truncated,
                    over_budget=lambda limit: HeaderTooLarge(limit=limit))  # fmt: skip
    h = _Header(cursor, max_header_bytes)
    magic = cursor.take(4) if size >= 4 else cursor.take(size)
    if magic != MAGIC:
        raise BadMagic(start=_clip(magic))
    version = h.u32()
    if version not in VERSIONS:
        raise UnsupportedVersion(version=version)
    n_tensors, n_kv = h.u64(), h.u64()
    if n_tensors > max_tensors:
        raise TooManyTensors(count=n_tensors, limit=max_tensors)
    h.fits(n_kv * 13, lambda: TooManyKeys(count=n_kv, limit=max_header_bytes))  # empty key, type, a byte
    alignment = DEFAULT_ALIGNMENT
    keys: set[str] = set()
    for _ in range(n_kv):
        key = h.text("key")
        if key in keys:
            raise DuplicateKey(key=_clip(key))
        keys.add(key)
        vtype = h.u32()
        if key == ALIGNMENT_KEY:
            if vtype != _UINT32:
                raise BadAlignment(value=f"a value of type {vtype}")
            alignment = h.u32()
            if alignment == 0 or alignment & (alignment - 1):
                raise BadAlignment(value=alignment)
        else:
            h.skip_value(key, vtype)
    # An info takes at least 24 bytes: an empty name, n_dims, type and offset.
    h.fits(n_tensors * 24, lambda: HeaderTooLarge(limit=max_header_bytes))
    infos = [_tensor_info(h) for _ in range(n_tensors)]
    return _layout(infos, cursor.pos, alignment, size)


_Info = tuple[str, tuple[int, ...], int, int]  # name, dims (ggml order), ggml type, offset


def _tensor_info(h: _Header) -> _Info:
    name = h.text("tensor name")
    n_dims = h.u32()
    if n_dims > MAX_DIMS:
        raise TooManyDims(tensor=_clip(name), n_dims=n_dims, limit=MAX_DIMS)
    dims = tuple(h.u64() for _ in range(n_dims))
    ggml_type = h.u32()
    offset = h.u64()
    return name, dims, ggml_type, offset


def _nbytes(name: str, dims: tuple[int, ...], ggml_type: int) -> tuple[int, str | None]:
    known = GGML_TYPES.get(ggml_type)
    if known is None:
        raise UnknownGgmlType(tensor=_clip(name), type=ggml_type)
    type_name, block, block_bytes, dtype_name = known
    count = 1
    for d in dims:
        count *= d
        if count * block_bytes > MAX_TENSOR_BYTES * block:
            raise TensorTooLarge(tensor=_clip(name), dims=list(dims), limit=MAX_TENSOR_BYTES)
    first = dims[0] if dims else 1
    if first % block:
        raise TensorSizeMismatch(tensor=_clip(name), ggml_type=type_name, block=block, dims=list(dims), count=first)
    return count // block * block_bytes, dtype_name


def _layout(infos: list[_Info], infos_end: int, alignment: int, size: int) -> FileLayout:
    data_start = -(-infos_end // alignment) * alignment
    placed: list[tuple[int, int, str, tuple[int, ...], str | None]] = []
    names: set[str] = set()
    for name, dims, ggml_type, offset in infos:
        if name in names:
            raise DuplicateTensor(tensor=_clip(name))
        names.add(name)
        nbytes, dtype_name = _nbytes(name, dims, ggml_type)
        if offset % alignment:
            raise MisalignedTensor(tensor=_clip(name), offset=offset, alignment=alignment)
        start = data_start + offset
        if start + nbytes > size:
            raise TensorOutOfBounds(tensor=_clip(name), start=start, end=start + nbytes, size=size)
        placed.append((start, nbytes, name, dims, dtype_name))
    placed.sort(key=lambda p: (p[0], p[1]))
    # The header span takes the padding to the data section too (when the file holds it).
    header_end = min(data_start, size, *(p[0] for p in placed))
    segments: list[Segment] = [opaque(0, 0, header_end, HEADER_SEGMENT)]
    tensors: list[TensorEntry] = []
    position, previous = header_end, ""
    for start, nbytes, name, dims, dtype_name in placed:
        if start < position:
            raise OverlappingTensors(tensor=_clip(name), start=start, end=start + nbytes,
                                     previous=_clip(previous), previous_end=position)  # fmt: skip
        if start > position:
            segments.append(opaque(len(segments), position, start - position))
        if dtype_name is None:
            segments.append(opaque(len(segments), start, nbytes, name))
        else:
            dtype: DType = DTYPES[dtype_name]
            shape = tuple(reversed(dims))
            segments.append(Segment(len(segments), start, nbytes, name, dtype, shape))
            tensors.append(TensorEntry(name, dtype, shape, start, nbytes))
        position, previous = start + nbytes, name
    if size > position:
        segments.append(opaque(len(segments), position, size - position))
    return FileLayout(FORMAT_ID, size, tuple(segments), tuple(tensors))


class GgufFormat(FileFormat):
    format_id = FORMAT_ID
    parses_tensors = True
    probe_bytes = 8

    def recognise(self, head: bytes, size: int) -> bool:
        return head[:4] == MAGIC and len(head) >= 8 and _U32.unpack_from(head, 4)[0] in VERSIONS

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        return _parse(read, size, max_header_bytes, max_tensors)


register_format(GgufFormat())
