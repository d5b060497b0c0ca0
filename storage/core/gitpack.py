"""How many bytes a pushed git pack unpacks into, found before anything unpacks it.

A push's pack is unpacked in memory (dulwich, storage/app/git_http.py). Its compressed size is bounded
by the route, but zlib inflates up to ~1,000 times, and a delta object names the size of the object it
rebuilds: a few kB of copy instructions can claim terabytes. dulwich checks each object against the
size its header declares, so the declared sizes are what unpacking costs: this walk adds them up
(for a delta, the size of the object it rebuilds) and stops at `limit`, before dulwich runs.

It reads only what it must of the pack format (object headers, the start of each delta) and inflates
each object in bounded pieces that are thrown away; everything else (checksums, delta bases, object
contents) is dulwich's to check. Cost: one inflate pass over the pack, O(pack bytes) time, O(1) memory
beyond the pack itself.
"""

from __future__ import annotations

import struct
import zlib

from storage.core.errors import GitPackInflated, GitPackInvalid

_OFS_DELTA, _REF_DELTA = 6, 7
_IN_PIECE = 64 << 10  # compressed bytes handed to zlib at a time (zlib copies what follows a stream's end)
_OUT_PIECE = 1 << 20  # inflated bytes produced, and thrown away, at a time
_DELTA_HEADER = 20  # inflated bytes enough to hold a delta's two size varints (10 bytes each at most)


def unpacked_bytes(pack: bytes | memoryview, limit: int, *, hash_size: int = 20) -> int:
    """The bytes `pack`'s objects unpack into; GitPackInflated past `limit`, GitPackInvalid for a pack
    whose headers or zlib streams do not parse (dulwich would refuse it too)."""
    view = memoryview(pack)
    if len(view) < 12 or bytes(view[:4]) != b"PACK":
        raise GitPackInvalid(detail="the pack does not start with a pack header")
    version, count = struct.unpack_from(">II", view, 4)
    if version not in (2, 3):
        raise GitPackInvalid(detail=f"pack version {version} is not 2 or 3")
    pos, total = 12, 0
    for _ in range(count):
        kind, declared, pos = _object_header(view, pos)
        if kind == _OFS_DELTA:
            pos = _skip_varint(view, pos)
        elif kind == _REF_DELTA:
            pos += hash_size
        head, pos = _inflate(view, pos, declared, keep=_DELTA_HEADER if kind in (_OFS_DELTA, _REF_DELTA) else 0)
        total += _delta_result_size(head) if kind in (_OFS_DELTA, _REF_DELTA) else declared
        if total > limit:
            raise GitPackInflated(limit=limit)
    return total


def _object_header(view: memoryview, pos: int) -> tuple[int, int, int]:
    """An object's type, its declared (inflated) size and where its data starts."""
    byte = _byte(view, pos)
    kind, size, shift = (byte >> 4) & 7, byte & 15, 4
    while byte & 0x80:
        pos += 1
        byte = _byte(view, pos)
        size |= (byte & 0x7F) << shift
        shift += 7
    return kind, size, pos + 1


def _skip_varint(view: memoryview, pos: int) -> int:
    while _byte(view, pos) & 0x80:
        pos += 1
    return pos + 1


def _byte(view: memoryview, pos: int) -> int:
    if pos >= len(view):
        raise GitPackInvalid(detail="the pack ends inside an object header")
    return view[pos]


def _inflate(view: memoryview, pos: int, declared: int, *, keep: int) -> tuple[bytes, int]:
    """Inflate the zlib stream at `pos`, keeping its first `keep` bytes; where the stream ends. A stream
    that inflates past its declared size stops there (dulwich refuses such an object too)."""
    inflater = zlib.decompressobj()
    head, produced = b"", 0
    try:
        while not inflater.eof:
            if pos >= len(view):
                raise GitPackInvalid(detail="the pack ends inside an object's data")
            data = view[pos : pos + _IN_PIECE]
            pos += len(data)
            while data and not inflater.eof:
                out = inflater.decompress(data, min(_OUT_PIECE, declared - produced + 1))
                produced += len(out)
                if produced > declared:
                    raise GitPackInvalid(detail=f"an object inflates past the {declared:,} bytes it declares")
                if len(head) < keep:
                    head += out[: keep - len(head)]
                data = memoryview(inflater.unconsumed_tail)
    except zlib.error as err:
        raise GitPackInvalid(detail=f"an object's data is not zlib: {err}") from None
    return head, pos - len(inflater.unused_data)


def _delta_result_size(head: bytes) -> int:
    """The size of the object a delta rebuilds: the second of the two varints that open it."""
    pos = 0
    for _ in range(2):
        value, shift = 0, 0
        while True:
            if pos >= len(head):
                raise GitPackInvalid(detail="a delta ends inside its size header")
            byte = head[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value
