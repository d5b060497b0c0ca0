"""Checksums of fixed blocks of a staged upload, so bytes served before ingest are checked too.

A file is readable from staging the moment its upload completes, long before ingest has proven and
reframed it. While the upload streams in, the CRC-32 of every BLOCK_BYTES block is recorded (4 bytes
per MiB); a read from staging checks every block it touches before a byte of it is sent, so a staged
object damaged at rest aborts the response instead of serving wrong bytes with the right ETag.
CRC-32 catches damage (bit rot, a torn write, a truncated object); the whole file's SHA-256, checked
again by ingest, is what proves the content.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

from storage.core.errors import IntegrityError

# 1 MiB: a ranged read touches at most two blocks more than it needs, and a 50 GB file's sums are 200 KB.
BLOCK_BYTES = 1 << 20


class CorruptStagedFile(IntegrityError):
    """staged file {sha256} is damaged: block {block} (bytes {start}-{end}) fails its checksum"""


class BlockSums:
    """Accumulates the CRC-32 of each block of a stream, fed in pieces of any size."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self._sums: list[int] = []
        self._crc = 0
        self._filled = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.block_bytes - self._filled)
            self._crc = zlib.crc32(view[:take], self._crc)
            self._filled += take
            view = view[take:]
            if self._filled == self.block_bytes:
                self._sums.append(self._crc)
                self._crc, self._filled = 0, 0

    def digest(self) -> bytes:
        """The sums, little-endian uint32, one per block (the last may be short)."""
        sums = self._sums + ([self._crc] if self._filled else [])
        return struct.pack(f"<{len(sums)}I", *sums)


def sums_of(data: bytes, block_bytes: int = BLOCK_BYTES) -> bytes:
    acc = BlockSums(block_bytes)
    acc.update(data)
    return acc.digest()


def block_span(start: int, end: int, size: int, block_bytes: int = BLOCK_BYTES) -> tuple[int, int]:
    """The block-aligned byte range [a, b) that covers [start, end) of a file of `size` bytes."""
    if end <= start:
        return start, start
    return start - start % block_bytes, min(size, -(-end // block_bytes) * block_bytes)


def checked_range(
    chunks: Iterable[bytes],
    *,
    sums: bytes,
    sha256: str,
    start: int,
    end: int,
    size: int,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[bytes]:
    """Bytes [start, end) of a file out of `chunks`, the bytes of `block_span(start, end, size)`; each
    block is checked against `sums` before any of it is yielded (CorruptStagedFile otherwise)."""
    expected = struct.unpack(f"<{len(sums) // 4}I", sums)
    if len(expected) != -(-size // block_bytes):
        raise CorruptStagedFile(sha256=sha256, block="count", start=0, end=size)
    first, stop = block_span(start, end, size, block_bytes)
    position = first
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= block_bytes or (pending and position + len(pending) >= stop):
            take = min(block_bytes, len(pending))
            yield from _checked_block(bytes(pending[:take]), expected, sha256, position, start, end, block_bytes)
            del pending[:take]
            position += take
    if position != stop or pending:
        # The object is shorter (or longer) than the file it stands for.
        raise CorruptStagedFile(sha256=sha256, block=position // block_bytes, start=position, end=stop)


def _checked_block(
    block: bytes, expected: tuple[int, ...], sha256: str, position: int, start: int, end: int, block_bytes: int
) -> Iterator[bytes]:
    index = position // block_bytes
    if zlib.crc32(block) != expected[index]:
        raise CorruptStagedFile(sha256=sha256, block=index, start=position, end=position + len(block))
    lo, hi = max(start, position) - position, min(end, position + len(block)) - position
    if hi > lo:
        yield block[lo:hi]
