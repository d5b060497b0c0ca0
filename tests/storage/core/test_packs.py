"""Packs: frames back to back in one object, walkable without the catalog; damage is an IntegrityError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES
from storage.core.errors import CorruptPack, IntegrityError
from storage.core.frames import decode_frame, encode_frame
from storage.core.packs import PACK_MAGIC, PackBuilder, iter_pack, read_pack_header

U8 = DTYPES["U8"]


def frame(data: bytes) -> bytes:
    return encode_frame(get_codec("plain"), data, U8)


@given(st.lists(st.binary(max_size=2000), max_size=12), st.integers(1, 5000))
def test_every_frame_is_found_again_where_its_placement_says(payloads: list[bytes], target: int) -> None:
    builder = PackBuilder(target_bytes=target, solo_bytes=1500)
    blobs = [frame(p) for p in payloads]
    tickets = [builder.add(b) for b in blobs]
    builder.seal()
    objects = {o.key: o for o in builder.take_sealed()}
    for ticket, blob, payload in zip(tickets, blobs, payloads, strict=True):
        placed = builder.placement(ticket)
        obj = objects[placed.key]
        assert obj.kind == ("frame" if len(blob) >= 1500 else "pack")
        assert obj.key.startswith("frames/" if obj.kind == "frame" else "packs/")
        assert obj.data[placed.offset : placed.offset + placed.length] == blob
        assert decode_frame(blob) == payload
    walked = [obj.data[o : o + n] for obj in objects.values() if obj.kind == "pack" for o, n in iter_pack(obj.data)]
    assert sorted(walked) == sorted(b for b in blobs if len(b) < 1500)


def test_a_placement_is_known_only_once_its_pack_is_sealed() -> None:
    builder = PackBuilder(target_bytes=1 << 20, solo_bytes=1 << 20)
    ticket = builder.add(frame(b"abc"))
    with pytest.raises(RuntimeError):
        builder.placement(ticket)
    builder.seal()
    assert builder.placement(ticket).offset == 12
    builder.seal()  # nothing pending: no empty pack
    assert len(builder.take_sealed()) == 1


def _pack(*blobs: bytes) -> bytes:
    builder = PackBuilder(target_bytes=1 << 20, solo_bytes=1 << 20)
    for blob in blobs:
        builder.add(blob)
    builder.seal()
    return builder.take_sealed()[0].data


DAMAGED = [
    ("short", b"DHPK\x01"),
    ("magic", b"XXPK" + _pack(frame(b"x"))[4:]),
    ("version", PACK_MAGIC + struct.pack("<H", 9) + _pack(frame(b"x"))[6:]),
    ("truncated", _pack(frame(b"x" * 100))[:-1]),
    ("trailing", _pack(frame(b"x")) + b"\0"),
    ("count", _pack(frame(b"x"))[:8] + struct.pack("<I", 2) + _pack(frame(b"x"))[12:]),
]


@pytest.mark.parametrize("data", [d for _, d in DAMAGED], ids=[n for n, _ in DAMAGED])
def test_a_damaged_pack_is_an_integrity_error(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        read_pack_header(data)
        list(iter_pack(data))


def test_pack_errors_are_corrupt_packs() -> None:
    with pytest.raises(CorruptPack, match="magic"):
        read_pack_header(b"NOPE" + bytes(8))
