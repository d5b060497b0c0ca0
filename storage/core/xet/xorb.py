"""The xorb format, read as hostile input: a sequence of (optionally compressed) chunks.

Each chunk is an 8-byte header, then its compressed bytes:

    version u8 (0) | compressed length u24 LE | scheme u8 | uncompressed length u24 LE

Schemes: 0 none, 1 an LZ4 *frame*, 2 the bytes regrouped by position mod 4 (all bytes 0 mod 4, then
1 mod 4, ...) and then an LZ4 frame. A xorb may end with a footer (ident `XETBLOB`, version 1, the
xorb hash, the chunk hashes, the packed and unpacked chunk end offsets, then a u32 with the footer's
length); `hf_xet` 1.8.0 uploads xorbs without it, but one that has it is checked against the chunks.

Every limit is checked before the bytes it guards are allocated: a chunk's declared uncompressed size,
the xorb's running total, and decompression itself, which is asked for at most one byte more than the
header declares, so a bomb is caught having produced one byte too many, not gigabytes.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lz4.frame

from storage.core.xet import errors
from storage.core.xet.chunking import MAX_CHUNK
from storage.core.xet.hashing import HASH_BYTES, chunk_hash, hash_to_hex, xorb_hash

HEADER_BYTES = 8
CHUNK_VERSION = 0
# The client cuts a xorb at 64 MiB of chunk data or 8192 chunks, whichever comes first. The spec says
# the server refuses more than 64 MiB *serialized*, but the client's own limit is on uncompressed bytes,
# so 64 MiB of incompressible chunks arrives a few KiB larger; the headers are allowed for on top.
MAX_XORB_DATA = 64 << 20
MAX_CHUNKS = 8 * 1024
MAX_COMPRESSED_CHUNK = 2 * MAX_CHUNK  # the reference's bound; LZ4 of incompressible data grows slightly
FOOTER_IDENT = b"XETBLOB"
FOOTER_VERSION = 1
_HASHES_IDENT, _HASHES_VERSION = b"XBLBHSH", 0
_BOUNDARIES_IDENT, _BOUNDARIES_VERSION = b"XBLBBND", 1
_NONCE_BYTES = 16


def _footer_size(count: int) -> int:
    return 8 + HASH_BYTES + 12 + HASH_BYTES * count + 12 + 8 * count + 12 + _NONCE_BYTES


MAX_SERIALIZED_XORB = MAX_XORB_DATA + HEADER_BYTES * MAX_CHUNKS + _footer_size(MAX_CHUNKS) + 4


class Compression(enum.IntEnum):
    NONE = 0
    LZ4 = 1
    BG4_LZ4 = 2


_NAMES = {Compression.NONE: "none", Compression.LZ4: "LZ4", Compression.BG4_LZ4: "ByteGrouping4+LZ4"}


@dataclass(frozen=True, slots=True)
class Chunk:
    hash: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Xorb:
    hash: bytes
    chunks: tuple[Chunk, ...]
    # Where each chunk's header+data ends in the serialized xorb, and how it was compressed: what a
    # ranged download of chunks [i, j) needs. Empty for a xorb built in memory rather than parsed.
    packed_ends: tuple[int, ...] = field(default=(), compare=False)
    schemes: tuple[Compression, ...] = field(default=(), compare=False)
    has_footer: bool = field(default=False, compare=False)

    @property
    def num_bytes(self) -> int:
        return sum(len(chunk.data) for chunk in self.chunks)

    def chunk_refs(self) -> list[tuple[bytes, int]]:
        """(hash, length) of each chunk, what the merkle hashes and shards are built from."""
        return [(chunk.hash, len(chunk.data)) for chunk in self.chunks]


def packed_range(packed_ends: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """The serialized bytes [first, last) that hold chunks [start, end), headers included: what a
    download URL's byte range must cover (HTTP ranges are inclusive: `first`-`last - 1`)."""
    if not 0 <= start < end <= len(packed_ends):
        raise ValueError(f"chunk range [{start}, {end}) is not within {len(packed_ends)} chunks")
    return (packed_ends[start - 1] if start else 0), packed_ends[end - 1]


def build_xorb(chunk_data: Iterable[bytes]) -> Xorb:
    """A xorb of these chunks, hashed."""
    chunks = tuple(Chunk(chunk_hash(data), bytes(data)) for data in chunk_data)
    return Xorb(xorb_hash((chunk.hash, len(chunk.data)) for chunk in chunks), chunks)


# --- compression -------------------------------------------------------------------------------------


def bg4_split(data: bytes) -> bytes:
    return b"".join(data[group::4] for group in range(4))


def bg4_regroup(grouped: bytes) -> bytes:
    size, rem = divmod(len(grouped), 4)
    out = bytearray(len(grouped))
    start = 0
    for group in range(4):
        length = size + (1 if group < rem else 0)
        out[group::4] = grouped[start : start + length]
        start += length
    return bytes(out)


def _lz4(data: bytes) -> bytes:
    # Independent 64 KiB blocks, no checksums, no content size: what the client's lz4_flex writes.
    packed: bytes = lz4.frame.compress(
        data, block_size=lz4.frame.BLOCKSIZE_MAX64KB, block_linked=False, content_checksum=False, store_size=False
    )
    return packed


def compress(data: bytes, scheme: Compression) -> bytes:
    if scheme == Compression.NONE:
        return data
    if scheme == Compression.LZ4:
        return _lz4(data)
    return _lz4(bg4_split(data))


def _unlz4(payload: bytes, declared: int, index: int, offset: int, scheme: Compression) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        out = decompressor.decompress(payload, max_length=declared + 1)
    except RuntimeError as exc:
        raise errors.DecompressionFailed(index=index, offset=offset, scheme=_NAMES[scheme], reason=exc) from None
    if len(out) > declared:
        raise errors.DecompressionBomb(index=index, offset=offset, scheme=_NAMES[scheme], declared=declared)
    if not decompressor.eof:
        raise errors.DecompressionFailed(index=index, offset=offset, scheme=_NAMES[scheme], reason="truncated frame")
    if decompressor.unused_data:
        reason = f"{len(decompressor.unused_data)} bytes after the frame"
        raise errors.DecompressionFailed(index=index, offset=offset, scheme=_NAMES[scheme], reason=reason)
    return bytes(out)


def _decompress(payload: bytes, scheme: Compression, declared: int, index: int, offset: int) -> bytes:
    if scheme == Compression.NONE:
        return payload
    data = _unlz4(payload, declared, index, offset, scheme)
    if len(data) != declared:
        raise errors.DecompressedSizeMismatch(index=index, offset=offset, declared=declared, actual=len(data))
    return data if scheme == Compression.LZ4 else bg4_regroup(data)


# --- parsing -----------------------------------------------------------------------------------------


def parse_xorb(data: bytes | bytearray | memoryview, expected_hash: bytes | None = None) -> Xorb:
    """Parse and check a serialized xorb; `expected_hash` is the hash it was uploaded under."""
    view = memoryview(data).cast("B")
    if len(view) > MAX_SERIALIZED_XORB:
        raise errors.XorbTooLarge(size=len(view), limit=MAX_SERIALIZED_XORB)
    chunks: list[Chunk] = []
    packed_ends: list[int] = []
    schemes: list[Compression] = []
    total = 0
    offset = 0
    footer_at: int | None = None
    while offset < len(view):
        if view[offset : offset + len(FOOTER_IDENT)] == FOOTER_IDENT:
            footer_at = offset
            break
        index = len(chunks)
        if index == MAX_CHUNKS:
            raise errors.TooManyChunks(limit=MAX_CHUNKS)
        scheme, payload, length = _read_chunk(view, offset, index)
        if total + length > MAX_XORB_DATA:
            raise errors.XorbDataTooLarge(limit=MAX_XORB_DATA)
        chunk_data = _decompress(payload, scheme, length, index, offset)
        chunks.append(Chunk(chunk_hash(chunk_data), chunk_data))
        total += length
        offset += HEADER_BYTES + len(payload)
        packed_ends.append(offset)
        schemes.append(scheme)
    if not chunks:
        raise errors.XorbEmpty()
    digest = xorb_hash((chunk.hash, len(chunk.data)) for chunk in chunks)
    if footer_at is not None:
        _check_footer(view, footer_at, digest, chunks, packed_ends)
    if expected_hash is not None and digest != expected_hash:
        raise errors.XorbHashMismatch(actual=hash_to_hex(digest), expected=hash_to_hex(expected_hash))
    return Xorb(digest, tuple(chunks), tuple(packed_ends), tuple(schemes), footer_at is not None)


def _read_chunk(view: memoryview, offset: int, index: int) -> tuple[Compression, bytes, int]:
    """Check a chunk header; its scheme, compressed bytes and declared uncompressed length."""
    available = len(view) - offset
    if available < HEADER_BYTES:
        raise errors.ChunkHeaderTruncated(index=index, offset=offset, available=available)
    header = bytes(view[offset : offset + HEADER_BYTES])
    version, scheme_id = header[0], header[4]
    compressed = int.from_bytes(header[1:4], "little")
    length = int.from_bytes(header[5:8], "little")
    where: dict[str, Any] = {"index": index, "offset": offset}
    if version != CHUNK_VERSION:
        raise errors.ChunkVersionUnsupported(**where, version=version)
    if scheme_id not in Compression._value2member_map_:
        raise errors.UnknownCompression(**where, scheme=scheme_id)
    scheme = Compression(scheme_id)
    if length == 0:
        raise errors.EmptyChunk(**where)
    if length > MAX_CHUNK:
        raise errors.ChunkTooLarge(**where, length=length, limit=MAX_CHUNK)
    if compressed > MAX_COMPRESSED_CHUNK:
        raise errors.CompressedChunkTooLarge(**where, length=compressed, limit=MAX_COMPRESSED_CHUNK)
    if scheme == Compression.NONE and compressed != length:
        raise errors.StoredChunkSizeMismatch(**where, compressed=compressed, uncompressed=length)
    if compressed > available - HEADER_BYTES:
        raise errors.ChunkDataTruncated(**where, length=compressed, available=available - HEADER_BYTES)
    start = offset + HEADER_BYTES
    return scheme, bytes(view[start : start + compressed]), length


class _Reader:
    """Reads fields of a footer; running off its end is a XorbFooterInvalid."""

    def __init__(self, view: memoryview, offset: int) -> None:
        self.view, self.offset, self.start = view, offset, offset

    def take(self, size: int, what: str) -> bytes:
        if len(self.view) - self.offset < size:
            raise errors.XorbFooterInvalid(offset=self.start, problem=f"ends inside {what}")
        out = bytes(self.view[self.offset : self.offset + size])
        self.offset += size
        return out

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def section(self, ident: bytes, version: int, what: str) -> None:
        if self.take(len(ident), f"the {what} ident") != ident:
            raise errors.XorbFooterInvalid(offset=self.start, problem=f"{what} section does not start with {ident!r}")
        found = self.take(1, f"the {what} version")[0]
        if found != version:
            raise errors.XorbFooterInvalid(offset=self.start, problem=f"{what} version {found}, expected {version}")


def _check_footer(view: memoryview, at: int, digest: bytes, chunks: Sequence[Chunk], ends: Sequence[int]) -> None:
    reader = _Reader(view, at)
    count = len(chunks)
    reader.section(FOOTER_IDENT, FOOTER_VERSION, "footer")
    if reader.take(HASH_BYTES, "the xorb hash") != digest:
        raise errors.XorbFooterMismatch(problem="the footer's xorb hash is not the chunks' hash")
    hashes_start = reader.offset
    reader.section(_HASHES_IDENT, _HASHES_VERSION, "hashes")
    if reader.u32("the hash count") != count:
        raise errors.XorbFooterMismatch(problem=f"the hashes section does not count {count} chunks")
    for index, chunk in enumerate(chunks):
        if reader.take(HASH_BYTES, "the chunk hashes") != chunk.hash:
            raise errors.XorbFooterMismatch(problem=f"chunk {index}'s hash differs from its data's")
    boundaries_start = reader.offset
    reader.section(_BOUNDARIES_IDENT, _BOUNDARIES_VERSION, "boundaries")
    if reader.u32("the boundary count") != count:
        raise errors.XorbFooterMismatch(problem=f"the boundaries section does not count {count} chunks")
    if [reader.u32("the packed offsets") for _ in range(count)] != list(ends):
        raise errors.XorbFooterMismatch(problem="packed chunk offsets differ from the chunks' positions")
    unpacked, position = [], 0
    for chunk in chunks:
        position += len(chunk.data)
        unpacked.append(position)
    if [reader.u32("the unpacked offsets") for _ in range(count)] != unpacked:
        raise errors.XorbFooterMismatch(problem="unpacked chunk offsets differ from the chunks' lengths")
    if reader.u32("the chunk count") != count:
        raise errors.XorbFooterMismatch(problem=f"the final chunk count is not {count}")
    hashes_from_end, boundaries_from_end = reader.u32("the section offsets"), reader.u32("the section offsets")
    reader.take(_NONCE_BYTES, "the nonce")  # any value: it only makes re-uploads' bytes differ
    info_end = reader.offset
    if (hashes_from_end, boundaries_from_end) != (info_end - hashes_start, info_end - boundaries_start):
        raise errors.XorbFooterInvalid(offset=at, problem="section offsets from the end are wrong")
    if reader.u32("the footer length") != info_end - at:
        raise errors.XorbFooterInvalid(offset=at, problem=f"footer length is not {info_end - at}")
    if reader.offset != len(view):
        raise errors.XorbFooterInvalid(offset=at, problem=f"{len(view) - reader.offset} bytes follow the footer")


# --- serializing -------------------------------------------------------------------------------------


def _pack_chunk(data: bytes, scheme: Compression | None) -> tuple[Compression, bytes]:
    if scheme is None:  # the smallest of the schemes
        options = [(s, compress(data, s)) for s in (Compression.LZ4, Compression.BG4_LZ4)]
        scheme, payload = min(options, key=lambda option: len(option[1]))
    else:
        payload = compress(data, scheme)
    if scheme != Compression.NONE and len(payload) >= len(data):
        return Compression.NONE, data  # as the client does: compression that does not pay is not kept
    return scheme, payload


def serialize_xorb(
    xorb: Xorb | Sequence[bytes], compression: Compression | None = Compression.LZ4, footer: bool = False
) -> bytes:
    """Serialize a xorb (or the chunks of one). `compression=None` keeps each chunk's smallest form;
    `footer` appends the footer the client itself omits."""
    if not isinstance(xorb, Xorb):
        xorb = build_xorb(xorb)
    out = bytearray()
    ends: list[int] = []
    for chunk in xorb.chunks:
        scheme, payload = _pack_chunk(chunk.data, compression)
        out += bytes([CHUNK_VERSION]) + len(payload).to_bytes(3, "little")
        out += bytes([scheme]) + len(chunk.data).to_bytes(3, "little") + payload
        ends.append(len(out))
    if footer:
        out += _footer(xorb, ends)
    return bytes(out)


def _footer(xorb: Xorb, ends: Sequence[int]) -> bytes:
    count = len(xorb.chunks)
    unpacked, position = [], 0
    for chunk in xorb.chunks:
        position += len(chunk.data)
        unpacked.append(position)
    boundaries = (
        _BOUNDARIES_IDENT + bytes([_BOUNDARIES_VERSION]) + struct.pack(f"<I{count}I{count}I", count, *ends, *unpacked)
    )
    hashes = _HASHES_IDENT + bytes([_HASHES_VERSION]) + struct.pack("<I", count) + b"".join(c.hash for c in xorb.chunks)
    tail_size = 12 + _NONCE_BYTES
    boundaries_from_end = len(boundaries) + tail_size
    hashes_from_end = len(hashes) + boundaries_from_end
    tail = struct.pack("<III", count, hashes_from_end, boundaries_from_end) + bytes(_NONCE_BYTES)
    info = FOOTER_IDENT + bytes([FOOTER_VERSION]) + xorb.hash + hashes + boundaries + tail
    return info + struct.pack("<I", len(info))
