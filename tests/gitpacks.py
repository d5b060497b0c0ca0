"""Hand-made git packs for hostile-input tests: entries built with dulwich's own header writer, so only
what a test means to break is broken."""

from __future__ import annotations

import hashlib
import struct
import zlib

from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.pack import pack_object_header

BLOB, OFS_DELTA = 3, 6


def raw_pack(*entries: bytes) -> bytes:
    """A pack of the given entries (header + data each), with a valid trailing checksum."""
    body = b"PACK" + struct.pack(">II", 2, len(entries)) + b"".join(entries)
    return body + hashlib.sha1(body).digest()


def entry(kind: int, size: int, data: bytes, delta_base: int | None = None) -> bytes:
    return bytes(pack_object_header(kind, delta_base, size, DEFAULT_OBJECT_FORMAT)) + data


def zlib_bomb_pack(inflated: int) -> bytes:
    """One blob of `inflated` zero bytes, honestly declared, compressed ~1,000 times."""
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(b"\0" * (1 << 20)) for _ in range(inflated >> 20)) + deflate.flush()
    return raw_pack(entry(BLOB, inflated >> 20 << 20, data))


def delta_claim_pack(claimed: int) -> bytes:
    """A blob, then a delta against it whose header claims to rebuild `claimed` bytes (and holds nothing)."""
    base = b"a" * 100
    first = entry(BLOB, len(base), zlib.compress(base))
    varint = bytearray()
    while True:
        varint.append((claimed & 0x7F) | (0x80 if claimed >> 7 else 0))
        claimed >>= 7
        if not claimed:
            break
    claim = bytes([len(base)]) + bytes(varint)
    return raw_pack(first, entry(OFS_DELTA, len(claim), zlib.compress(claim), delta_base=len(first)))
