"""PyTorch zip checkpoints (`torch.save` since 1.6), recognised by structure and kept as opaque spans.

A checkpoint is a zip archive (stored, uncompressed members) holding `<archive>/data.pkl`, the pickled
object graph, and one `<archive>/data/<key>` member per tensor storage. The pickle is never executed
or even parsed here: this module reads only the zip structure (end of central directory, zip64 records,
the central directory), as hostile input, and cuts the file into one opaque span per member (local
header, data and any descriptor), a leading span for anything before the first member and a trailing
span for the central directory and end records. The spans always tile the file, so whatever the
directory claims, no byte is lost or changed; a later format version may parse the storages as tensors.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from storage.core.errors import InvalidInput
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange
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
_LOCAL_FIXED = 30  # bytes of a local file header before its name and extra field
_MAX_COMMENT = 0xFFFF
_ZIP64_EXTRA = 0x0001
# `<archive>/data.pkl`: the member torch.load unpickles first; it names the checkpoint's archive.
_DATA_PKL = re.compile(rb"[^/]+/data\.pkl")


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


@dataclass(frozen=True, slots=True)
class Member:
    name: bytes
    offset: int  # of its local header
    compressed_size: int


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
        magic, csize, usize, name_len, extra_len, comment_len, disk, offset = (
            fields[0], fields[8], fields[9], fields[10], fields[11], fields[12], fields[13], fields[16]
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
        members.append(Member(name, offset, csize))
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


class TorchZipFormat(FileFormat):
    format_id = FORMAT_ID
    parses_tensors = False  # the storages are opaque spans for now
    probe_bytes = 4

    def recognise(self, head: bytes, size: int) -> bool:
        return head[:4] == _LOCAL_MAGIC and size >= _LOCAL_FIXED + _EOCD.size

    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        directory = read_directory(read, size, max_header_bytes=max_header_bytes)
        if not any(_DATA_PKL.fullmatch(m.name) for m in directory.members):
            raise NotACheckpoint()
        members = sorted(directory.members, key=lambda m: m.offset)
        segments: list[Segment] = []
        position = 0
        for i, member in enumerate(members):
            next_start = members[i + 1].offset if i + 1 < len(members) else directory.offset
            if member.offset >= directory.offset:
                raise MemberOutOfBounds(name=_text(member.name), offset=member.offset, limit=directory.offset)
            # Its local header holds at least its fixed part and its name, then its data.
            needs = member.offset + _LOCAL_FIXED + len(member.name) + member.compressed_size
            if needs > next_start:
                raise MembersOverlap(name=_text(member.name), end=needs, next_start=next_start)
            if member.offset > position:
                segments.append(opaque(len(segments), position, member.offset - position))
            segments.append(opaque(len(segments), member.offset, next_start - member.offset))
            position = next_start
        if directory.offset > position:
            segments.append(opaque(len(segments), position, directory.offset - position))
        segments.append(opaque(len(segments), directory.offset, size - directory.offset))
        return FileLayout(FORMAT_ID, size, tuple(segments), None)


def _text(name: bytes) -> str:
    return name[:200].decode("utf-8", "replace")


register_format(TorchZipFormat())
