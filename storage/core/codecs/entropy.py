"""The entropy stage: each byte plane is zstd-compressed, or stored raw when that is not smaller.

Payload layout (all little-endian): one entry per plane, `mode: u8, stored_length: u32`, then the
stored planes back to back. The number of planes and the decoded length of each follow from the dtype
and the raw size, which the frame header carries, so they are never read from the payload.

`level=None` selects zstd parameters tuned for planes, where nearly all the gain is the Huffman coding
of literals and LZ matches cost more than they save: the fast strategy with the longest minimum match
and a 64-entry hash table, so few matches are tried or taken, and 128 KiB blocks (window_log=17), each
with its own Huffman table. On MiniLM BF16 exponent planes this measured ratio 0.1651 of the tensor
bytes at ~1.4 GB/s against 0.1835 for level 1 and 0.2052 for level 3 (order-0 entropy: 0.1633).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence

import zstandard

from storage.core.codecs.base import Buffer, CorruptFrame

RAW = 0
ZSTD = 1
_ENTRY = struct.Struct("<BI")

LITERAL_PARAMS = {
    "strategy": 1,
    "min_match": 7,
    "hash_log": 6,
    "window_log": 17,
    "write_checksum": 0,
    "write_content_size": 1,
    "write_dict_id": 0,
}
MIN_LEVEL = -7
MAX_LEVEL = 22


def _new_compressor(level: int | None) -> zstandard.ZstdCompressor:
    if level is None:
        return zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(**LITERAL_PARAMS))
    return zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True)


# zstd contexts, reused per thread: making one costs ~28 us (measured), as much as coding 40 KB, and the
# chooser and small tensors would pay it dozens of times per tensor. A context is not thread-safe, and
# `compress` resets it, so a reused context writes exactly the bytes a fresh one would.
_contexts = threading.local()


def compressor(level: int | None) -> zstandard.ZstdCompressor:
    """This thread's zstd compressor for `level` (None: the plane-tuned parameters)."""
    cache: dict[int | None, zstandard.ZstdCompressor] | None = getattr(_contexts, "compressors", None)
    if cache is None:
        cache = _contexts.compressors = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = _new_compressor(level)
    return cctx


def decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_contexts, "decompressor", None)
    if dctx is None:
        dctx = _contexts.decompressor = zstandard.ZstdDecompressor()
    return dctx


def pack_planes(planes: Sequence[Buffer], level: int | None) -> list[Buffer]:
    """The payload holding `planes` as pieces to concatenate: the plane table, then each plane
    compressed when that makes it smaller, else the plane itself (a view, not a copy)."""
    cctx = compressor(level)
    table = bytearray()
    stored: list[Buffer] = [table]
    for plane in planes:
        size = memoryview(plane).nbytes
        packed = cctx.compress(plane) if size else b""
        if size and len(packed) < size:
            table += _ENTRY.pack(ZSTD, len(packed))
            stored.append(packed)
        else:
            table += _ENTRY.pack(RAW, size)
            stored.append(plane)
    return stored


def decode_planes(payload: Buffer, sizes: Sequence[int]) -> list[Buffer]:
    """The planes of `payload`, plane i exactly `sizes[i]` bytes; CorruptFrame on any inconsistency."""
    view = memoryview(payload).cast("B")
    table_size = _ENTRY.size * len(sizes)
    if len(view) < table_size:
        raise CorruptFrame(detail=f"payload of {len(view)} bytes is shorter than its plane table")
    entries = [_ENTRY.unpack_from(view, _ENTRY.size * i) for i in range(len(sizes))]
    if table_size + sum(length for _, length in entries) != len(view):
        raise CorruptFrame(detail="plane lengths do not add up to the payload length")
    dctx = decompressor()
    planes: list[Buffer] = []
    offset = table_size
    for (mode, length), size in zip(entries, sizes, strict=True):
        stored = view[offset : offset + length]
        offset += length
        if mode == RAW:
            if length != size:
                raise CorruptFrame(detail=f"raw plane has {length} bytes, expected {size}")
            planes.append(stored)
        elif mode == ZSTD:
            planes.append(_inflate(dctx, stored, size))
        else:
            raise CorruptFrame(detail=f"unknown plane mode {mode}")
    return planes


def _inflate(dctx: zstandard.ZstdDecompressor, stored: memoryview, size: int) -> bytes:
    # The declared content size is checked before decompressing: python-zstandard allocates whatever a
    # frame declares, so a hostile frame could otherwise claim gigabytes.
    try:
        declared = zstandard.frame_content_size(stored)
    except zstandard.ZstdError as error:
        raise CorruptFrame(detail=f"bad zstd frame header: {error}") from None
    if declared != size:
        raise CorruptFrame(detail=f"zstd plane declares {declared} bytes, expected {size}")
    try:
        plane = dctx.decompress(stored, max_output_size=size)
    except zstandard.ZstdError as error:
        raise CorruptFrame(detail=f"zstd plane does not decode: {error}") from None
    if len(plane) != size:
        raise CorruptFrame(detail=f"zstd plane decoded to {len(plane)} bytes, expected {size}")
    return plane
