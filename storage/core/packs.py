"""Packs: many small frames in one store object, so millions of tiny tensors cost few objects.

Layout (format v1, see docs/format.md): magic ``DHPK``, u16 version, u16 reserved (0), u32 frame count,
then the frame blobs back to back. Each frame blob describes its own length, so a pack can be walked
without the catalog. A frame too large to share a pack is
stored alone under ``frames/<id>``.

Object names are random, not content hashes: no two ingests ever share an object, so GC can never
delete an object that a concurrent ingest has just found "already present" (dedup happens at the
tensor level, where the catalog's foreign keys guard it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from storage.core import keys
from storage.core.errors import CorruptPack
from storage.core.frames import frame_length

PACK_MAGIC = b"DHPK"
PACK_VERSION = 1
_HEADER = struct.Struct("<4sHHI")


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one frame blob went: an object key and the byte range inside it."""

    key: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class SealedObject:
    key: str
    data: bytes
    kind: str  # "pack" | "frame"


@dataclass
class PackBuilder:
    """Collects frame blobs; frames of `solo_bytes` or more become objects of their own.

    `add` returns a ticket; once `seal` has run, `placement(ticket)` says where the frame went.
    """

    target_bytes: int
    solo_bytes: int
    _pending: list[bytes] = field(default_factory=list)
    _pending_bytes: int = 0
    _placements: list[Placement | None] = field(default_factory=list)
    _waiting: list[int] = field(default_factory=list)
    sealed: list[SealedObject] = field(default_factory=list)

    def add(self, blob: bytes) -> int:
        ticket = len(self._placements)
        if len(blob) >= self.solo_bytes:
            key = keys.frame_key()
            self.sealed.append(SealedObject(key, blob, "frame"))
            self._placements.append(Placement(key, 0, len(blob)))
            return ticket
        self._placements.append(None)
        self._pending.append(blob)
        self._waiting.append(ticket)
        self._pending_bytes += len(blob)
        if self._pending_bytes >= self.target_bytes:
            self.seal()
        return ticket

    def seal(self) -> None:
        """Close the pack being filled (if any) into a sealed object."""
        if not self._pending:
            return
        parts = [_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0, len(self._pending))]
        offset = _HEADER.size
        for ticket, blob in zip(self._waiting, self._pending, strict=True):
            parts.append(blob)
            self._placements[ticket] = Placement("", offset, len(blob))
            offset += len(blob)
        data = b"".join(parts)
        key = keys.pack_key()
        for ticket in self._waiting:
            placed = self._placements[ticket]
            assert placed is not None
            self._placements[ticket] = Placement(key, placed.offset, placed.length)
        self.sealed.append(SealedObject(key, data, "pack"))
        self._pending, self._waiting, self._pending_bytes = [], [], 0

    def placement(self, ticket: int) -> Placement:
        placed = self._placements[ticket]
        if placed is None or not placed.key:
            raise RuntimeError("frame is in a pack that has not been sealed yet")
        return placed

    def take_sealed(self) -> list[SealedObject]:
        """Sealed objects not yet handed out (to be written to the store)."""
        out, self.sealed = self.sealed, []
        return out


def iter_pack(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, length) of every frame blob in a pack, found from the blobs' own headers alone."""
    count = read_pack_header(data)
    offset = _HEADER.size
    for _ in range(count):
        length = frame_length(memoryview(data)[offset:])
        if offset + length > len(data):
            raise CorruptPack(detail=f"pack ends inside a frame at offset {offset}")
        yield offset, length
        offset += length
    if offset != len(data):
        raise CorruptPack(detail=f"pack has {len(data) - offset} bytes after its {count} frames")


def read_pack_header(data: bytes) -> int:
    """The frame count of a pack, after checking its magic and version."""
    if len(data) < _HEADER.size:
        raise CorruptPack(detail=f"pack is {len(data)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, _reserved, count = _HEADER.unpack_from(data)
    if magic != PACK_MAGIC:
        raise CorruptPack(detail=f"not a pack: magic {magic!r}")
    if version != PACK_VERSION:
        raise CorruptPack(detail=f"unsupported pack version {version} (this build reads {PACK_VERSION})")
    return int(count)
