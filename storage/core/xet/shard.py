"""The MDB shard format, read as hostile input: file reconstructions and xorb listings.

Every record is a multiple of 48 bytes, little-endian:

    header     tag (32) | version u64 (2) | footer size u64 (0: none, as uploads come; or 200)
    files      per file: file hash (32) | flags u32 | term count n u32 | 8 unused
                         n terms: xorb hash (32) | flags u32 | unpacked bytes u32 | first chunk u32 | end chunk u32
                         n verification hashes (32 + 16 unused) if flag bit 31
                         the file's SHA-256, word-swapped like a hash (32 + 16 unused), if flag bit 30
               then a bookend: a hash of all 0xff bytes, 16 zero bytes
    xorbs      per xorb: xorb hash (32) | flags u32 | chunk count m u32 | unpacked bytes u32 | bytes on disk u32
                         m chunks: chunk hash (32) | unpacked offset u32 | unpacked bytes u32 | flags u32 | unused u32
               then a bookend
    lookups    (footer only) sorted tables of (first 8 hash bytes as u64, entry index) for files, xorbs and
               chunks, which the client's dedup searches
    footer     200 bytes of offsets and totals (only when the header says so)

The client uploads shards without lookup tables or footer; the server answers the global-dedup query
with a complete one, since the client loads it as a shard file and searches its chunk table.
Every count is checked against the bytes that remain before anything is read, every offset against
the sections it must point at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import blake3

from storage.core.xet import errors
from storage.core.xet.chunking import MAX_CHUNK
from storage.core.xet.hashing import HASH_BYTES, ZERO_HASH, hash_to_hex, swap_words

SHARD_TAG = b"HFRepoMetaData\x00" + bytes(
    [85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
)
SHARD_VERSION = 2
FOOTER_VERSION = 1
ENTRY_BYTES = 48
HEADER_BYTES = 48
FOOTER_BYTES = 200
BOOKEND_HASH = b"\xff" * HASH_BYTES
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
CHUNK_FLAG_GLOBAL_DEDUP = 1 << 31
NO_EXPIRY = 2**64 - 1
# The client aims its shards at 64 MiB; twice that leaves room for an overshoot and still bounds memory.
MAX_SHARD_BYTES = 128 << 20

_FILE_HEADER = struct.Struct("<32sIIQ")
_TERM = struct.Struct("<32sIIII")
_XORB_HEADER = struct.Struct("<32sIIII")
_XORB_CHUNK = struct.Struct("<32sIIII")
_FOOTER = struct.Struct("<9Q32sQQ6QQQQQ")
_LOOKUP = struct.Struct("<QI")
_CHUNK_LOOKUP = struct.Struct("<QII")
assert _FOOTER.size == FOOTER_BYTES and _TERM.size == _FILE_HEADER.size == _XORB_HEADER.size == ENTRY_BYTES


@dataclass(frozen=True, slots=True)
class Term:
    """Chunks [chunk_start, chunk_end) of one xorb, `unpacked_length` bytes of the file."""

    xorb_hash: bytes
    chunk_start: int
    chunk_end: int
    unpacked_length: int


@dataclass(frozen=True, slots=True)
class FileEntry:
    file_hash: bytes
    terms: tuple[Term, ...]
    # The file's SHA-256 digest in the usual byte order (hashlib's); the shard stores it word-swapped.
    sha256: bytes | None = None
    # One range hash per term (hashing.verification_hash of the term's chunk hashes), or none at all.
    verification: tuple[bytes, ...] = ()

    @property
    def size(self) -> int:
        return sum(term.unpacked_length for term in self.terms)


@dataclass(frozen=True, slots=True)
class XorbChunk:
    chunk_hash: bytes
    offset: int  # unpacked byte offset in the xorb
    length: int
    flags: int = 0  # bit 31: eligible for global dedup


@dataclass(frozen=True, slots=True)
class XorbEntry:
    xorb_hash: bytes
    chunks: tuple[XorbChunk, ...]
    num_bytes_on_disk: int = 0  # the serialized xorb's size; the client writes 0 in its uploads

    @property
    def num_bytes(self) -> int:
        return sum(chunk.length for chunk in self.chunks)


@dataclass(frozen=True, slots=True)
class Shard:
    files: tuple[FileEntry, ...]
    xorbs: tuple[XorbEntry, ...]
    # Non-zero in a dedup answer whose chunk hashes are keyed: each listed chunk hash is then
    # blake3(chunk hash, key=hmac_key), which the client recomputes from the chunks it has, so the
    # answer reveals no chunk hash. Only a shard with a footer can carry it.
    hmac_key: bytes = ZERO_HASH


def with_hmac_key(shard: Shard, key: bytes) -> Shard:
    """The same shard with its xorbs' chunk hashes keyed by `key` (32 bytes, not all zero)."""
    if len(key) != HASH_BYTES or key == ZERO_HASH:
        raise ValueError("an HMAC key is 32 bytes, not all zero")
    if shard.hmac_key != ZERO_HASH:
        raise ValueError("the shard's chunk hashes are keyed already")
    xorbs = tuple(
        XorbEntry(
            xorb.xorb_hash,
            tuple(
                XorbChunk(blake3.blake3(c.chunk_hash, key=key).digest(), c.offset, c.length, c.flags)
                for c in xorb.chunks
            ),
            xorb.num_bytes_on_disk,
        )
        for xorb in shard.xorbs
    )
    return Shard(shard.files, xorbs, key)


def xorb_entry(xorb_hash: bytes, chunks: Iterable[tuple[bytes, int]], num_bytes_on_disk: int = 0) -> XorbEntry:
    """A xorb listing from (chunk hash, length) pairs in xorb order."""
    listed, offset = [], 0
    for digest, length in chunks:
        listed.append(XorbChunk(digest, offset, length))
        offset += length
    return XorbEntry(xorb_hash, tuple(listed), num_bytes_on_disk)


# --- parsing -----------------------------------------------------------------------------------------


class _Cursor:
    def __init__(self, view: memoryview, end: int) -> None:
        self.view, self.offset, self.end = view, 0, end

    def remaining_entries(self) -> int:
        return (self.end - self.offset) // ENTRY_BYTES

    def read(self, layout: struct.Struct, part: str) -> tuple:  # type: ignore[type-arg]
        available = self.end - self.offset
        if available < layout.size:
            raise errors.ShardTruncated(part=part, offset=self.offset, needed=layout.size, available=max(available, 0))
        fields = layout.unpack_from(self.view, self.offset)
        self.offset += layout.size
        return fields

    def read_many(self, layout: struct.Struct, count: int, part: str) -> list[tuple]:  # type: ignore[type-arg]
        """`count` records at once, bounds-checked once."""
        size = layout.size * count
        available = self.end - self.offset
        if available < size:
            raise errors.ShardTruncated(part=part, offset=self.offset, needed=size, available=max(available, 0))
        records = list(layout.iter_unpack(self.view[self.offset : self.offset + size]))
        self.offset += size
        return records

    def hash_entry(self, part: str) -> bytes:
        digest: bytes = self.read(_TERM, part)[0]  # a hash, then 16 unused bytes
        return digest


def parse_shard(data: bytes | bytearray | memoryview) -> Shard:
    """Parse and check a shard, with or without its footer and lookup tables."""
    view = memoryview(data).cast("B")
    if len(view) > MAX_SHARD_BYTES:
        raise errors.ShardTooLarge(size=len(view), limit=MAX_SHARD_BYTES)
    cursor = _Cursor(view, len(view))
    tag, version, footer_size = cursor.read(struct.Struct("<32sQQ"), "header")
    if tag != SHARD_TAG:
        raise errors.ShardBadMagic()
    if version != SHARD_VERSION:
        raise errors.ShardVersionUnsupported(part="header", version=version, supported=SHARD_VERSION)
    if footer_size not in (0, FOOTER_BYTES):
        raise errors.ShardFooterSizeInvalid(size=footer_size, expected=FOOTER_BYTES)
    if footer_size:
        if len(view) < HEADER_BYTES + footer_size:
            raise errors.ShardTruncated(
                part="footer", offset=HEADER_BYTES, needed=footer_size, available=len(view) - HEADER_BYTES
            )
        cursor.end = len(view) - footer_size
    files = _parse_files(cursor)
    xorb_section = cursor.offset
    xorbs = _parse_xorbs(cursor)
    hmac_key = ZERO_HASH
    if footer_size:
        hmac_key = _check_footer(view, cursor.offset, xorb_section, files, xorbs)
    elif cursor.offset != len(view):
        raise errors.ShardTrailingBytes(count=len(view) - cursor.offset, part="xorb section", offset=cursor.offset)
    return Shard(tuple(files), tuple(xorbs), hmac_key)


def _parse_files(cursor: _Cursor) -> list[FileEntry]:
    files: list[FileEntry] = []
    while True:
        file_hash, flags, count, _ = cursor.read(_FILE_HEADER, "file section")
        if file_hash == BOOKEND_HASH:
            return files
        name = hash_to_hex(file_hash)
        if flags & ~(FLAG_VERIFICATION | FLAG_METADATA_EXT):
            raise errors.UnknownFileFlags(file=name, flags=flags)
        following = count * (2 if flags & FLAG_VERIFICATION else 1) + (1 if flags & FLAG_METADATA_EXT else 0)
        if following > cursor.remaining_entries():
            raise errors.TooManyEntries(part="file", entry=name, count=following, limit=cursor.remaining_entries())
        terms = []
        for index, (xorb_hash, _flags, length, start, end) in enumerate(cursor.read_many(_TERM, count, "file section")):
            if start >= end:
                raise errors.InvalidTermRange(file=name, term=index, start=start, end=end)
            if not 1 <= length <= (end - start) * MAX_CHUNK:
                raise errors.InvalidTermLength(file=name, term=index, length=length, limit=(end - start) * MAX_CHUNK)
            terms.append(Term(xorb_hash, start, end, length))
        verification = (
            tuple(record[0] for record in cursor.read_many(_TERM, count, "file section"))
            if flags & FLAG_VERIFICATION
            else ()
        )
        sha256 = swap_words(cursor.hash_entry("file section")) if flags & FLAG_METADATA_EXT else None
        files.append(FileEntry(file_hash, tuple(terms), sha256, verification))


def _parse_xorbs(cursor: _Cursor) -> list[XorbEntry]:
    xorbs: list[XorbEntry] = []
    seen: set[bytes] = set()
    while True:
        xorb_hash, _flags, count, num_bytes, on_disk = cursor.read(_XORB_HEADER, "xorb section")
        if xorb_hash == BOOKEND_HASH:
            return xorbs
        name = hash_to_hex(xorb_hash)
        if xorb_hash in seen:
            raise errors.DuplicateXorbEntry(xorb=name)
        seen.add(xorb_hash)
        if count == 0:
            raise errors.XorbEntryEmpty(xorb=name)
        if count > cursor.remaining_entries():
            raise errors.TooManyEntries(part="xorb", entry=name, count=count, limit=cursor.remaining_entries())
        chunks, position = [], 0
        records = cursor.read_many(_XORB_CHUNK, count, "xorb section")
        for index, (digest, offset, length, chunk_flags, _) in enumerate(records):
            if offset != position:
                problem = f"starts at byte {offset}, but the chunks before it end at {position}"
                raise errors.XorbEntryChunkInvalid(xorb=name, index=index, problem=problem)
            if not 1 <= length <= MAX_CHUNK:
                problem = f"length {length} is outside 1..{MAX_CHUNK}"
                raise errors.XorbEntryChunkInvalid(xorb=name, index=index, problem=problem)
            chunks.append(XorbChunk(digest, offset, length, chunk_flags))
            position += length
        if num_bytes != position:
            raise errors.XorbEntrySizeMismatch(xorb=name, declared=num_bytes, actual=position)
        xorbs.append(XorbEntry(xorb_hash, tuple(chunks), on_disk))


def _check_footer(
    view: memoryview, lookups_start: int, xorb_section: int, files: Sequence[FileEntry], xorbs: Sequence[XorbEntry]
) -> bytes:
    """Check the footer's offsets against the sections; its HMAC key."""
    footer_at = len(view) - FOOTER_BYTES
    fields = _FOOTER.unpack_from(view, footer_at)
    version, file_info, xorb_info, file_lookup, file_count, xorb_lookup, xorb_count, chunk_lookup, chunk_count = fields[
        :9
    ]
    footer_offset = fields[-1]
    if version != FOOTER_VERSION:
        raise errors.ShardVersionUnsupported(part="footer", version=version, supported=FOOTER_VERSION)
    expected = {
        "file_info_offset": (file_info, HEADER_BYTES),
        "xorb_info_offset": (xorb_info, xorb_section),
        "file_lookup_offset": (file_lookup, lookups_start),
        "xorb_lookup_offset": (xorb_lookup, file_lookup + _LOOKUP.size * file_count),
        "chunk_lookup_offset": (chunk_lookup, xorb_lookup + _LOOKUP.size * xorb_count),
        "footer_offset": (footer_offset, chunk_lookup + _CHUNK_LOOKUP.size * chunk_count),
    }
    for name, (found, wanted) in expected.items():
        if found != wanted:
            raise errors.ShardFooterInvalid(problem=f"{name} is {found}, but that section is at {wanted}")
    if footer_offset != footer_at:
        raise errors.ShardFooterInvalid(
            problem=f"lookup tables end at {footer_offset}, the footer starts at {footer_at}"
        )
    if file_count > len(files) or xorb_count > len(xorbs) or chunk_count > sum(len(x.chunks) for x in xorbs):
        raise errors.ShardFooterInvalid(problem="a lookup table has more entries than the sections it indexes")
    key: bytes = fields[9]
    return key


# --- serializing -------------------------------------------------------------------------------------


def _truncated(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "little")


def serialize_shard(
    shard: Shard, footer: bool = False, creation_timestamp: int = 0, key_expiry: int = NO_EXPIRY
) -> bytes:
    """A shard as the client uploads it (`footer=False`), or complete with lookup tables and footer as
    the global-dedup answer must be. The timestamps only go in the footer."""
    out = bytearray()
    out += struct.pack("<32sQQ", SHARD_TAG, SHARD_VERSION, FOOTER_BYTES if footer else 0)
    file_lookup: list[tuple[int, int]] = []
    for entry in shard.files:
        file_lookup.append((_truncated(entry.file_hash), (len(out) - HEADER_BYTES) // ENTRY_BYTES))
        # A file without terms (an empty file) is flagged as verified, as the client flags it.
        verified = len(entry.verification) == len(entry.terms)
        if entry.verification and not verified:
            raise ValueError("a file needs one verification hash per term, or none")
        flags = (FLAG_VERIFICATION if verified else 0) | (FLAG_METADATA_EXT if entry.sha256 else 0)
        out += _FILE_HEADER.pack(entry.file_hash, flags, len(entry.terms), 0)
        for term in entry.terms:
            out += _TERM.pack(term.xorb_hash, 0, term.unpacked_length, term.chunk_start, term.chunk_end)
        for digest in entry.verification:
            out += digest + bytes(16)
        if entry.sha256:
            out += swap_words(entry.sha256) + bytes(16)
    out += BOOKEND_HASH + bytes(16)
    xorb_section = len(out)
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    for xorb in shard.xorbs:
        index = (len(out) - xorb_section) // ENTRY_BYTES
        xorb_lookup.append((_truncated(xorb.xorb_hash), index))
        out += _XORB_HEADER.pack(xorb.xorb_hash, 0, len(xorb.chunks), xorb.num_bytes, xorb.num_bytes_on_disk)
        for position, chunk in enumerate(xorb.chunks):
            chunk_lookup.append((_truncated(chunk.chunk_hash), index, position))
            out += _XORB_CHUNK.pack(chunk.chunk_hash, chunk.offset, chunk.length, chunk.flags, 0)
    out += BOOKEND_HASH + bytes(16)
    if not footer:
        if shard.hmac_key != ZERO_HASH:
            raise ValueError("only a shard with a footer can carry an HMAC key")
        return bytes(out)
    lookups_start = len(out)
    for key, index in sorted(file_lookup):
        out += _LOOKUP.pack(key, index)
    xorb_lookup_at = len(out)
    for key, index in sorted(xorb_lookup):
        out += _LOOKUP.pack(key, index)
    chunk_lookup_at = len(out)
    for key, index, position in sorted(chunk_lookup):
        out += _CHUNK_LOOKUP.pack(key, index, position)
    out += _FOOTER.pack(
        FOOTER_VERSION,
        HEADER_BYTES,
        xorb_section,
        lookups_start,
        len(file_lookup),
        xorb_lookup_at,
        len(xorb_lookup),
        chunk_lookup_at,
        len(chunk_lookup),
        shard.hmac_key,
        creation_timestamp,
        key_expiry,
        *([0] * 6),
        sum(xorb.num_bytes_on_disk for xorb in shard.xorbs),
        sum(entry.size for entry in shard.files),
        sum(xorb.num_bytes for xorb in shard.xorbs),
        len(out),
    )
    return bytes(out)
