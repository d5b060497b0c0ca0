"""PyTorch zip checkpoints (`torch.save` since 1.6): the zip structure and the storages as tensors.

A checkpoint is a zip archive (stored, uncompressed members) holding `<archive>/data.pkl`, the pickled
object graph, and one `<archive>/data/<key>` member per tensor storage. The zip structure (end of
central directory, zip64 records, the central directory, each storage's local header) is read as
hostile input, one TorchZipError per broken rule. The pickle is read, never executed, by
torchpickle.py: it declares each storage's dtype and size and the tensors viewing it. Each storage
member's data bytes become one tensor segment, named after the (first) tensor covering it, so that the
same weights in a safetensors file dedup and delta tensor by tensor; local headers, data.pkl, the other
members and the central directory stay opaque spans. Storages shared by several tensors, and views
with offsets, rebuild exactly because a segment is a storage's bytes, not a tensor's.

A pickle that reader refuses (a global, opcode or size beyond what it admits), compressed or
big-endian storages leave the file cut as before: one opaque span per member, no tensors. The
segments always tile the file, so whatever the directory or the pickle claims, no byte is lost.
"""


from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput
from storage.core.formats import torchpickle
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange, TensorEntry
from storage.core.formats.registry import register_format
from storage.core.segments import Segment, opaque

FORMAT_ID = "torchzip"

_LOCAL_MAGIC = b"PK\x03\x04"
_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory, then a comment of up to 64 KiB
_EOCD_MAGIC = b"PK\x05\x06"
_LOCATOR = struct.Struct("<4sIQI")  # zip64 end of central directory locator, right before the EOCD
_LOCATOR_MAGIC = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_EOCD64_MAGIC = b"PK\x06\x06"
_ENTRY = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory file header
_ENTRY_MAGIC = b"PK\x01\x02"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header, then its name and extra field
_LOCAL_FIXED = _LOCAL.size
_MAX_COMMENT = 0xFFFF
_ZIP64_EXTRA = 0x0001
# `<archive>/data.pkl`: the member torch.load unpickles first; it names the checkpoint's archive.
_DATA_PKL = re.compile(rb"[^/]+/data\.pkl")
# torch's dtype names, as the pickle spells them, for the dtypes deltahub codes (storage/core/dtypes.py);
# the others (complex128, complex32, float4_e2m1fn_x2, bits*, quantized) stay bytes.
TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "complex64": "C64", "uint16": "U16",
    "uint32": "U32", "uint64": "U64", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
}  # fmt: skip


class TorchZipError(InvalidInput):
    """invalid PyTorch zip checkpoint: {detail}"""


class NoEndRecord(TorchZipError):
    """no end of central directory record in the last {searched} bytes"""


class MultiDiskArchive(TorchZipError):
    """the archive spans several disks ({detail})"""


class BadZip64Record(TorchZipError):
    """zip64 end of central directory: {detail}"""


class CentralDirectoryOutOfBounds(TorchZipError):
    """central directory [{start}, {end}) is outside the {limit} bytes before the end records"""


class CentralDirectoryTooLarge(TorchZipError):
    """central directory of {size} bytes exceeds the limit of {limit} bytes"""


class BadCentralEntry(TorchZipError):
    """central directory entry {index}: {detail}"""


class EntryCountMismatch(TorchZipError):
    """central directory holds {found} entries, the end record says {declared}"""


class NotACheckpoint(TorchZipError):
    """no <archive>/data.pkl member: a zip archive, but not a torch.save checkpoint"""


class MemberOutOfBounds(TorchZipError):
    """member {name!r} starts at {offset}, not before the central directory at {limit}"""


class MembersOverlap(TorchZipError):
    """member {name!r} needs bytes up to {end}, but the next member starts at {next_start}"""


class LocalHeaderMismatch(TorchZipError):
    """member {name!r}: the local header at {offset} {detail}"""


class StorageMissing(TorchZipError):
    """the pickle declares storage {key!r}, but the archive has no member {member!r}"""


class StorageSizeMismatch(TorchZipError):
    """storage {key!r} declares {numel} elements of {dtype} ({needed} bytes), but its member holds {size}"""


class TensorOutsideStorage(TorchZipError):
    """tensor {tensor!r} reaches element {extent} of storage {key!r}, past its {nbytes} bytes of {dtype}"""


class StoragesUnread(InvalidInput):
    """storages kept as opaque bytes: {detail}

    Not an error of the file: a checkpoint this reader does not follow (another pickle, compressed or
    big-endian storages) is cut into member spans, as before tensors were parsed."""


@dataclass(frozen=True, slots=True)
class Member:
    name: bytes
    offset: int  # of its local header
    compressed_size: int
    size: int = 0  # uncompressed
    method: int = 0  # 0: stored


@dataclass(frozen=True, slots=True)
class Directory:
    offset: int
    size: int
    entries: int
    members: tuple[Member, ...]


def read_directory(read: ReadRange, size: int, *, max_header_bytes: int) -> Directory:
    """The central directory of a zip archive of `size` bytes, every rule checked; at most three ranged
    reads: the tail (end records), the zip64 record if any, and the directory (≤ max_header_bytes)."""
    tail_start = max(0, size - (_EOCD.size + _MAX_COMMENT + _LOCATOR.size))
    tail = read(tail_start, size)
    at = _find_eocd(tail)
    if at is None:
        raise NoEndRecord(searched=len(tail))
    _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    records_start = tail_start + at
    if 0xFFFF in (disk_entries, entries) or 0xFFFFFFFF in (cd_size, cd_offset):
        records_start, disk, cd_disk, disk_entries, entries, cd_size, cd_offset = _zip64(read, tail, at, tail_start)
    if disk or cd_disk or disk_entries != entries:
        raise MultiDiskArchive(detail=f"disk {disk}, directory on disk {cd_disk}, {disk_entries} of {entries} here")
    if cd_offset + cd_size > records_start:
        raise CentralDirectoryOutOfBounds(start=cd_offset, end=cd_offset + cd_size, limit=records_start)
    if cd_size > max_header_bytes:
        raise CentralDirectoryTooLarge(size=cd_size, limit=max_header_bytes)
    members = _parse_entries(read(cd_offset, cd_offset + cd_size), entries)
    return Directory(cd_offset, cd_size, entries, members)


def _find_eocd(tail: bytes) -> int | None:
    """The end record whose comment runs exactly to the end of the file (a comment may contain the magic)."""
    at = tail.rfind(_EOCD_MAGIC)
    while at >= 0:
        if at + _EOCD.size <= len(tail) and at + _EOCD.size + _EOCD.unpack_from(tail, at)[-1] == len(tail):
            return at
        at = tail.rfind(_EOCD_MAGIC, 0, at)
    return None


def _zip64(read: ReadRange, tail: bytes, at: int, tail_start: int) -> tuple[int, int, int, int, int, int, int]:
    if at < _LOCATOR.size:
        raise BadZip64Record(detail="the end record needs a zip64 locator before it, and there is none")
    magic, disk_of_record, record_offset, disks = _LOCATOR.unpack_from(tail, at - _LOCATOR.size)
    if magic != _LOCATOR_MAGIC:
        raise BadZip64Record(detail="the end record needs a zip64 locator before it, and there is none")
    locator_start = tail_start + at - _LOCATOR.size
    if disk_of_record != 0 or disks != 1:
        raise MultiDiskArchive(detail=f"zip64 record on disk {disk_of_record} of {disks}")
    if record_offset + _EOCD64.size > locator_start:
        raise BadZip64Record(detail=f"record at {record_offset} overlaps the locator at {locator_start}")
    record = read(record_offset, record_offset + _EOCD64.size)
    if len(record) < _EOCD64.size:
        raise BadZip64Record(detail="record is truncated")
    magic, _, _, _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset = _EOCD64.unpack_from(record)
    if magic != _EOCD64_MAGIC:
        raise BadZip64Record(detail=f"bad signature {magic!r}")
    return record_offset, disk, cd_disk, disk_entries, entries, cd_size, cd_offset


def _parse_entries(directory: bytes, declared: int) -> tuple[Member, ...]:
    members: list[Member] = []
    pos = 0
    while pos < len(directory):
        index = len(members)
        if index >= declared:
            raise EntryCountMismatch(found=f"more than {declared}", declared=declared)
        if pos + _ENTRY.size > len(directory):
            raise BadCentralEntry(index=index, detail="truncated header")
        fields = _ENTRY.unpack_from(directory, pos)
        magic, method, csize, usize, name_len, extra_len, comment_len, disk, offset = (
            fields[0], fields[4], fields[8], fields[9], fields[10], fields[11], fields[12], fields[13], fields[16]
        )  # fmt: skip
        if magic != _ENTRY_MAGIC:
            raise BadCentralEntry(index=index, detail=f"bad signature {magic!r}")
        end = pos + _ENTRY.size + name_len + extra_len + comment_len
        if end > len(directory):
            raise BadCentralEntry(index=index, detail="name, extra field or comment runs past the directory")
        name = directory[pos + _ENTRY.size : pos + _ENTRY.size + name_len]
        extra = directory[pos + _ENTRY.size + name_len : pos + _ENTRY.size + name_len + extra_len]
        usize, csize, offset, disk = _apply_zip64_extra(index, extra, usize, csize, offset, disk)
        if disk:
            raise MultiDiskArchive(detail=f"entry {index} is on disk {disk}")
        members.append(Member(name, offset, csize, usize, method))
        pos = end
    if len(members) != declared:
        raise EntryCountMismatch(found=len(members), declared=declared)
    return tuple(members)


def _apply_zip64_extra(index: int, extra: bytes, usize: int, csize: int, offset: int, disk: int) -> tuple[int, ...]:
    """Values that overflow 32 bits are 0xFFFFFFFF in the entry and follow, in this order, in the zip64
    extra field."""
    wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF, disk == 0xFFFF]
    if not any(wanted):
        return usize, csize, offset, disk
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == _ZIP64_EXTRA:
            values = [usize, csize, offset, disk]
            cursor = 0
            for slot, needed in enumerate(wanted):
                if not needed:
                    continue
                width = 4 if slot == 3 else 8
                if cursor + width > len(body):
                    raise BadCentralEntry(index=index, detail="zip64 extra field is too short")
                values[slot] = int.from_bytes(body[cursor : cursor + width], "little")
                cursor += width
            return tuple(values)
        pos += 4 + length
    raise BadCentralEntry(index=index, detail="a size or offset overflows 32 bits without a zip64 extra field")


@dataclass(frozen=True, slots=True)
class StorageSpan:
    """A storage member's data bytes, as the segment they become."""

    offset: int
    nbytes: int
    dtype: DType | None  # None: bytes of a dtype deltahub does not code (complex128, float8 x2, ...)
    shape: tuple[int, ...]
    name: str | None


def read_storages(
    read: ReadRange, members: list[Member], ends: dict[bytes, int], *, max_header_bytes: int, max_tensors: int
) -> dict[bytes, StorageSpan]:
    """The data span of data.pkl and of every storage the pickle declares, by member name (`ends`: where
    each member's span ends), with the dtype, shape and name of the tensor a storage holds. A storage whose
    bytes contradict the pickle raises its TorchZipError; a pickle or layout this reader does not follow
    raises a PickleError or StoragesUnread."""
    by_name = {m.name: m for m in members}
    pickles = [m for m in members if _DATA_PKL.fullmatch(m.name)]
    if len(pickles) != 1:
        raise StoragesUnread(detail=f"{len(pickles)} data.pkl members")
    archive = pickles[0].name[: -len(b"data.pkl")]
    if pickles[0].compressed_size > max_header_bytes:
        raise StoragesUnread(detail=f"data.pkl of {pickles[0].compressed_size} bytes exceeds {max_header_bytes}")
    pickle_offset = _data_offset(read, pickles[0], ends)
    pickle = _member_data(read, pickles[0], pickle_offset)
    checkpoint = torchpickle.read_checkpoint(pickle, max_tensors=max_tensors)
    order = by_name.get(archive + b"byteorder")
    if order is not None and _member_data(read, order, _data_offset(read, order, ends)) != b"little":
        raise StoragesUnread(detail="storages are not little-endian")
    on: dict[str, list[torchpickle.TensorDecl]] = {}
    for tensor in checkpoint.tensors:
        on.setdefault(tensor.storage, []).append(tensor)
    # The pickle is a span of its own too: a training series repeats it (same names, same keys) verbatim.
    spans = {pickles[0].name: StorageSpan(pickle_offset, len(pickle), None, (len(pickle),), None)}
    for key, storage in checkpoint.storages.items():
        name = archive + b"data/" + key.encode("utf-8", "surrogatepass")
        member = by_name.get(name)
        if member is None:
            raise StorageMissing(key=key, member=_text(name))
        offset = _data_offset(read, member, ends)
        if member.compressed_size != storage.nbytes or member.size != storage.nbytes:
            raise StorageSizeMismatch(key=key, numel=storage.numel, dtype=storage.dtype or "bytes",
                                      needed=storage.nbytes, size=member.size)  # fmt: skip
        tensors = on.get(key, [])
        for t in tensors:
            if t.extent() * torchpickle.ITEMSIZE[t.dtype] > storage.nbytes:
                raise TensorOutsideStorage(tensor=t.name or "(unnamed)", extent=t.extent(), key=key,
                                           nbytes=storage.nbytes, dtype=t.dtype)  # fmt: skip
        spans[name] = _span(offset, storage, tensors)
    return spans


def _span(offset: int, storage: torchpickle.StorageDecl, tensors: list[torchpickle.TensorDecl]) -> StorageSpan:
    """Dtype: the storage's, or its tensors' when it is untyped (bytes when they disagree). Shape: that of
    the first named tensor covering it whole and contiguously, else 1-D. Name: that tensor's, else the
    first named tensor's."""
    kinds = {t.dtype for t in tensors} | ({storage.dtype} if storage.dtype else set())
    torch_dtype = kinds.pop() if len(kinds) == 1 else None if kinds else "uint8"
    dtype = DTYPES.get(TORCH_DTYPES.get(torch_dtype or "", ""))
    nbytes = storage.nbytes
    if dtype is None or nbytes % dtype.itemsize:
        return StorageSpan(offset, nbytes, None, (nbytes,), None)
    named = [t for t in tensors if t.name is not None]
    covering = next((t for t in named if t.offset == 0 and t.contiguous() and t.dtype == torch_dtype
                     and t.numel * dtype.itemsize == nbytes), None)  # fmt: skip
    if covering is not None:
        return StorageSpan(offset, nbytes, dtype, covering.shape, covering.name)
    return StorageSpan(offset, nbytes, dtype, (nbytes // dtype.itemsize,), named[0].name if named else None)


def _data_offset(read: ReadRange, member: Member, ends: dict[bytes, int]) -> int:
    """Where the member's data starts: after its local header, whose extra field (torch pads it to align
    storages) the central directory does not repeat."""
    header = read(member.offset, member.offset + _LOCAL.size + len(member.name))
    if len(header) < _LOCAL.size + len(member.name):
        raise LocalHeaderMismatch(name=_text(member.name), offset=member.offset, detail="is truncated")
    magic, *_ = _LOCAL.unpack_from(header)
    name_len, extra_len = struct.unpack_from("<HH", header, _LOCAL.size - 4)
    if magic != _LOCAL_MAGIC or header[_LOCAL.size :] != member.name or name_len != len(member.name):
        raise LocalHeaderMismatch(name=_text(member.name), offset=member.offset,
                                  detail="does not name the member")  # fmt: skip
    if member.method != 0:
        raise StoragesUnread(detail=f"member {_text(member.name)!r} is compressed (method {member.method})")
    start: int = member.offset + _LOCAL.size + name_len + extra_len
    if start + member.compressed_size > ends[member.name]:
        raise MembersOverlap(name=_text(member.name), end=start + member.compressed_size, next_start=ends[member.name])
    return start


def _member_data(read: ReadRange, member: Member, start: int) -> bytes:
    data = read(start, start + member.compressed_size)
    if len(data) != member.compressed_size:
        raise LocalHeaderMismatch(name=_text(member.name), offset=member.offset, detail="leaves no room for the data")
    return data


class TorchZipFormat(FileFormat):
    format_id = FORMAT_ID
    parses_tensors = True
    probe_bytes = 4

    def recognise(self, head: bytes, size: int) -> bool:
        return head[:4] == _LOCAL_MAGIC and size >= _LOCAL_FIXED + _EOCD.size

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        directory, members, ends = _members(read, size, max_header_bytes=max_header_bytes)
        try:
            spans = read_storages(read, members, ends, max_header_bytes=max_header_bytes, max_tensors=max_tensors)
        except (torchpickle.PickleError, StoragesUnread) as exc:
            # As every file was cut before this parse; why, for the operator (nothing of it was run).
            return _member_spans(members, ends, directory, size, because=exc.message)
        # The cut-out data spans in file order, and the opaque runs between them (local headers, data
        # descriptors, small members, the central directory): fewer, larger opaque segments code smaller.
        segments: list[Segment] = []
        tensors: list[TensorEntry] = []
        position = 0
        for span in sorted(spans.values(), key=lambda x: x.offset):
            if span.offset > position:
                segments.append(opaque(len(segments), position, span.offset - position))
            if span.dtype is None:
                if span.nbytes:
                    segments.append(opaque(len(segments), span.offset, span.nbytes))
            else:
                segments.append(Segment(len(segments), span.offset, span.nbytes, span.name, span.dtype, span.shape))
                if span.name is not None:
                    tensors.append(TensorEntry(span.name, span.dtype, span.shape, span.offset, span.nbytes))
            position = span.offset + span.nbytes
        segments.append(opaque(len(segments), position, size - position))
        return FileLayout(FORMAT_ID, size, tuple(segments), tuple(tensors))


def _members(read: ReadRange, size: int, *, max_header_bytes: int) -> tuple[Directory, list[Member], dict[bytes, int]]:
    """The directory, its members in file order, and where each member's span ends (the next member,
    or the central directory), every rule of the zip side checked."""
    directory = read_directory(read, size, max_header_bytes=max_header_bytes)
    if not any(_DATA_PKL.fullmatch(m.name) for m in directory.members):
        raise NotACheckpoint()
    members = sorted(directory.members, key=lambda m: m.offset)
    ends: dict[bytes, int] = {}
    for i, member in enumerate(members):
        next_start = members[i + 1].offset if i + 1 < len(members) else directory.offset
        if member.offset >= directory.offset:
            raise MemberOutOfBounds(name=_text(member.name), offset=member.offset, limit=directory.offset)
        # Its local header holds at least its fixed part and its name, then its data.
        needs = member.offset + _LOCAL_FIXED + len(member.name) + member.compressed_size
        if needs > next_start:
            raise MembersOverlap(name=_text(member.name), end=needs, next_start=next_start)
        ends[member.name] = next_start
    return directory, members, ends


def member_spans(read: ReadRange, size: int, *, max_header_bytes: int) -> FileLayout:
    """The file cut into member spans with no tensors: what a checkpoint the reader does not follow
    gets, and what every torchzip file got before storages were parsed (those files keep these segments
    in the catalog, and read back from them)."""
    directory, members, ends = _members(read, size, max_header_bytes=max_header_bytes)
    return _member_spans(members, ends, directory, size)


def _member_spans(
    members: list[Member], ends: dict[bytes, int], directory: Directory, size: int, *, because: str | None = None
) -> FileLayout:
    """One opaque span per member (local header, data, descriptor), a leading span for anything before the
    first member and a trailing one for the central directory and end records: no tensors."""
    segments: list[Segment] = []
    position = 0
    for member in members:
        if member.offset > position:
            segments.append(opaque(len(segments), position, member.offset - position))
        segments.append(opaque(len(segments), member.offset, ends[member.name] - member.offset))
        position = ends[member.name]
    if directory.offset > position:
        segments.append(opaque(len(segments), position, directory.offset - position))
    segments.append(opaque(len(segments), directory.offset, size - directory.offset))
    return FileLayout(FORMAT_ID, size, tuple(segments), None, opaque_because=because)


def _text(name: bytes) -> str:
    return name[:200].decode("utf-8", "replace")


register_format(TorchZipFormat())
