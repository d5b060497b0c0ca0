"""Regenerating a torch.save zip's structure from a compact recipe, verified byte for byte.

torch's writer (PyTorchFileWriter over miniz) lays a checkpoint out deterministically: each member is a
local header (version 0, flags 0x0808: sizes in a data descriptor, UTF-8 names; no time, no CRC or
sizes) with an "FB" extra field padding its data to the archive's alignment, the data, a 16-byte data
descriptor (CRC-32 and both sizes), then the central directory (one entry per member, in file order), a
zip64 end record, its locator and the end record. Given the archive prefix (`geatnet_epoch_3/`), the
members' names, sizes and CRC-32s, and the alignment, every byte that is not member data follows; the
bytes of a small member (`.format_version`, `byteorder`, `.data/serialization_id`, ...) ride in the
recipe too, so only data.pkl and the storages stay spans of their own.

A recipe is used only when what it regenerates equals the file (`derive` checks every structure byte it
claims against the file): any other zip (another writer, a lying CRC or size, odd extra fields, members
out of order, 4 GiB offsets that would need zip64 fields) gets no recipe and keeps its opaque spans.

The recipe is encoded in two parts: the shape (alignment, names without the prefix, sizes: identical
across a training series, so it dedups) and the varying part (the prefix, the CRC-32s, the bytes of the
small members), a few hundred bytes per checkpoint.

Not yet wired into ingest and the reader (that is a new segment kind and catalog version): this module
derives, checks, encodes and rebuilds; bench/zipregen.py measures what storing recipes would save.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from storage.core.formats.base import ReadRange
from storage.core.formats.torchzip import Directory

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_DESCRIPTOR = struct.Struct("<4sIII")
_ENTRY = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR = struct.Struct("<4sIQI")
_EOCD = struct.Struct("<4sHHHHIIH")
# UTF-8 names, and (for a member with data) CRC and sizes in a descriptor after the data: an empty
# member has neither the flag nor the descriptor.
_UTF8, _DESCRIBED = 0x0800, 0x0008
_PAD_TAG = b"FB"
_PAD_FILL = b"Z"
# What miniz writes in the zip64 end record: made by 0x031e (Unix, 3.0), needs 4.5.
_EOCD64_MADE_BY, _EOCD64_NEEDS = 0x031E, 0x2D
# Past this, miniz writes zip64 fields in headers and entries: such archives keep their opaque spans.
_LIMIT = 0xFFFFFFFF
# Structure runs closer than this are read in one ranged read when a recipe is checked.
_COALESCE = 1 << 16
_MAX_ALIGNMENT = 1 << 12
_SHAPE_MAGIC, _VARYING_MAGIC, _VERSION = b"DHZS", b"DHZV", 1


class RecipeDecodeError(ValueError):
    """A stored recipe that does not decode: damage, reported by the reader as such."""


@dataclass(frozen=True, slots=True)
class RecipeMember:
    suffix: bytes  # its name after the archive prefix
    size: int
    crc: int
    inline: bytes | None  # its data, for a member kept in the recipe; None: a span stored on its own


@dataclass(frozen=True, slots=True)
class Recipe:
    prefix: bytes
    alignment: int
    members: tuple[RecipeMember, ...]


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a recipe lays out: the structure runs (offset, bytes) and the data spans (offset, size) of
    the members kept outside it, together tiling [0, size) in order."""

    size: int
    runs: tuple[tuple[int, bytes], ...]
    spans: tuple[tuple[int, int], ...]


def rebuild(recipe: Recipe) -> Rebuilt:
    """Every structure byte of the archive the recipe describes, and where its outside spans go."""
    runs: list[tuple[int, bytes]] = []
    spans: list[tuple[int, int]] = []
    pending = bytearray()
    pending_at = 0
    entries = bytearray()
    cursor = 0
    for member in recipe.members:
        name = recipe.prefix + member.suffix
        start = cursor + _LOCAL.size + len(name) + 4
        pad = -start % recipe.alignment
        flags = _flags(member)
        header = _LOCAL.pack(b"PK\x03\x04", 0, flags, 0, 0, 0, 0, 0, 0, len(name), 4 + pad)
        pending += header + name + _PAD_TAG + pad.to_bytes(2, "little") + _PAD_FILL * pad
        data_at = start + pad
        if member.inline is None:
            runs.append((pending_at, bytes(pending)))
            spans.append((data_at, member.size))
            pending = bytearray()
            pending_at = data_at + member.size
        else:
            pending += member.inline
        if flags & _DESCRIBED:
            pending += _DESCRIPTOR.pack(b"PK\x07\x08", member.crc, member.size, member.size)
        entries += _ENTRY.pack(b"PK\x01\x02", 0, 0, flags, 0, 0, 0, member.crc, member.size, member.size,
                               len(name), 0, 0, 0, 0, 0, cursor) + name  # fmt: skip
        cursor = data_at + member.size + _descriptor_size(member)
    n = len(recipe.members)
    cd_offset, cd_size = cursor, len(entries)
    record_at = cd_offset + cd_size
    pending += entries
    pending += _EOCD64.pack(b"PK\x06\x06", _EOCD64.size - 12, _EOCD64_MADE_BY, _EOCD64_NEEDS, 0, 0, n, n,
                            cd_size, cd_offset)  # fmt: skip
    pending += _LOCATOR.pack(b"PK\x06\x07", 0, record_at, 1)
    pending += _EOCD.pack(b"PK\x05\x06", 0, 0, n, n, cd_size, cd_offset, 0)
    runs.append((pending_at, bytes(pending)))
    return Rebuilt(pending_at + len(pending), tuple(runs), tuple(spans))


def derive(read: ReadRange, size: int, directory: Directory, outside: Iterable[bytes]) -> Recipe | None:
    """The recipe of a torch.save archive whose members named in `outside` are stored as spans of their
    own, or None when the file is not exactly what the recipe would rebuild (checked byte for byte)."""
    if size >= _LIMIT or not directory.members:
        return None
    keep_out = set(outside)
    members = directory.members
    slash = members[0].name.find(b"/")
    prefix = members[0].name[: slash + 1]
    if slash < 0 or any(not m.name.startswith(prefix) or m.method or m.size != m.compressed_size for m in members):
        return None
    crcs = _crcs(read(directory.offset, directory.offset + directory.size), len(members))
    if crcs is None:
        return None
    for alignment in _alignments(read, len(members[0].name)):
        guess = Recipe(prefix, alignment, tuple(
            RecipeMember(m.name[len(prefix):], m.size, crc, None if m.name in keep_out else b"")
            for m, crc in zip(members, crcs, strict=True)
        ))  # fmt: skip
        positions = _positions(guess)
        if [m.offset for m in members] != [header_at for header_at, _ in positions]:
            continue
        if positions[-1][1] + members[-1].size + _descriptor_size(guess.members[-1]) != directory.offset:
            continue
        # The inline members' data sit inside the runs: taken from the file, then every run is checked.
        filled: list[RecipeMember] = []
        for member, (_, data_at) in zip(guess.members, positions, strict=True):
            data = None if member.inline is None else read(data_at, data_at + member.size)
            filled.append(RecipeMember(member.suffix, member.size, member.crc, data))
        recipe = Recipe(prefix, alignment, tuple(filled))
        built = rebuild(recipe)
        if built.size == size and _matches(read, built.runs):
            return recipe
        return None
    return None


def _crcs(entries: bytes, count: int) -> list[int] | None:
    crcs: list[int] = []
    pos = 0
    for _ in range(count):
        if pos + _ENTRY.size > len(entries):
            return None
        fields = _ENTRY.unpack_from(entries, pos)
        crcs.append(fields[7])
        pos += _ENTRY.size + fields[10] + fields[11] + fields[12]
    return crcs


def _alignments(read: ReadRange, first_name_len: int) -> list[int]:
    """Alignments to try: torch's default (64), else the largest power of two (up to 4 KiB) the first
    member's data offset is a multiple of; `derive`'s byte check decides whether that was the rule."""
    header = read(0, _LOCAL.size)
    if len(header) < _LOCAL.size:
        return []
    data_at = _LOCAL.size + first_name_len + _LOCAL.unpack(header)[-1]
    alignment = _MAX_ALIGNMENT
    while alignment > 1 and data_at % alignment:
        alignment //= 2
    return [64] if alignment == 64 else [64, alignment]


def _flags(member: RecipeMember) -> int:
    return _UTF8 | _DESCRIBED if member.size else _UTF8


def _descriptor_size(member: RecipeMember) -> int:
    return _DESCRIPTOR.size if member.size else 0


def _positions(recipe: Recipe) -> list[tuple[int, int]]:
    """Each member's local header offset and data offset."""
    out: list[tuple[int, int]] = []
    cursor = 0
    for m in recipe.members:
        start = cursor + _LOCAL.size + len(recipe.prefix) + len(m.suffix) + 4
        data_at = start + (-start % recipe.alignment)
        out.append((cursor, data_at))
        cursor = data_at + m.size + _descriptor_size(m)
    return out


def _matches(read: ReadRange, runs: Iterable[tuple[int, bytes]]) -> bool:
    """Whether the file holds these runs, read in coalesced ranged reads."""
    batch: list[tuple[int, bytes]] = []
    for run in runs:
        if batch and run[0] - (batch[-1][0] + len(batch[-1][1])) > _COALESCE:
            if not _batch_matches(read, batch):
                return False
            batch = []
        batch.append(run)
    return not batch or _batch_matches(read, batch)


def _batch_matches(read: ReadRange, batch: list[tuple[int, bytes]]) -> bool:
    start, end = batch[0][0], batch[-1][0] + len(batch[-1][1])
    data = read(start, end)
    return len(data) == end - start and all(data[at - start : at - start + len(run)] == run for at, run in batch)


def assemble(recipe: Recipe, spans: Iterable[bytes]) -> bytes:
    """The whole archive: the recipe's runs with the outside members' data (in file order) between them."""
    built = rebuild(recipe)
    out = bytearray()
    data = list(spans)
    if len(data) != len(built.spans):
        raise ValueError(f"the recipe places {len(built.spans)} spans, {len(data)} given")
    for i, (_, run) in enumerate(built.runs):
        out += run
        if i < len(data):
            out += data[i]
    return bytes(out)


def encode(recipe: Recipe) -> tuple[bytes, bytes]:
    """The recipe's shape (alignment, names, sizes, which members are inline) and its varying part (the
    prefix, the CRC-32s, the inline members' data)."""
    shape = bytearray(_SHAPE_MAGIC + bytes([_VERSION]) + struct.pack("<HI", recipe.alignment, len(recipe.members)))
    varying = bytearray(_VARYING_MAGIC + bytes([_VERSION]) + struct.pack("<H", len(recipe.prefix)) + recipe.prefix)
    for m in recipe.members:
        shape += struct.pack("<HQB", len(m.suffix), m.size, m.inline is not None) + m.suffix
        varying += struct.pack("<I", m.crc) + (m.inline or b"")
    return bytes(shape), bytes(varying)


def decode(shape: bytes, varying: bytes) -> Recipe:
    """The recipe `encode` wrote; RecipeDecodeError for bytes that are not one."""
    try:
        if shape[:5] != _SHAPE_MAGIC + bytes([_VERSION]) or varying[:5] != _VARYING_MAGIC + bytes([_VERSION]):
            raise RecipeDecodeError("not a version 1 zip recipe")
        alignment, count = struct.unpack_from("<HI", shape, 5)
        (prefix_len,) = struct.unpack_from("<H", varying, 5)
        prefix = varying[7 : 7 + prefix_len]
        s, v = 11, 7 + prefix_len
        members: list[RecipeMember] = []
        for _ in range(count):
            suffix_len, size, inline = struct.unpack_from("<HQB", shape, s)
            suffix = shape[s + 11 : s + 11 + suffix_len]
            s += 11 + suffix_len
            (crc,) = struct.unpack_from("<I", varying, v)
            data = varying[v + 4 : v + 4 + size] if inline else None
            v += 4 + (size if inline else 0)
            if len(suffix) != suffix_len or (data is not None and len(data) != size):
                raise RecipeDecodeError("a member runs past the recipe")
            members.append(RecipeMember(suffix, size, crc, data))
    except struct.error as exc:
        raise RecipeDecodeError(f"truncated recipe: {exc}") from None
    if s != len(shape) or v != len(varying) or not 1 <= alignment <= _MAX_ALIGNMENT:
        raise RecipeDecodeError("trailing bytes or a bad alignment")
    return Recipe(prefix, alignment, tuple(members))
