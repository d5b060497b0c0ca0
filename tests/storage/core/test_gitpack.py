"""The unpacked size of a pushed pack, found before dulwich unpacks it: equal to what dulwich unpacks for
any pack dulwich writes (deltas included), and a bound that zlib and delta bombs cannot get past."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob
from dulwich.pack import create_delta, write_pack_objects
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core.errors import GitPackInflated, GitPackInvalid
from storage.core.gitpack import unpacked_bytes
from tests.gitpacks import BLOB, OFS_DELTA, delta_claim_pack, entry, raw_pack, zlib_bomb_pack


def dulwich_pack(contents: list[bytes], *, deltify: bool) -> bytes:
    out = io.BytesIO()
    blobs = [(Blob.from_string(c), None) for c in contents]
    write_pack_objects(out.write, blobs, object_format=DEFAULT_OBJECT_FORMAT, deltify=deltify)
    return out.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=8), st.booleans())
def test_the_count_is_what_dulwich_unpacks(contents: list[bytes], deltify: bool) -> None:
    # Similar contents, so that deltify really writes deltas.
    contents = list(dict.fromkeys(contents + [c + b"tail" for c in contents]))
    pack = dulwich_pack(contents, deltify=deltify)
    expected = sum(map(len, contents))
    assert unpacked_bytes(pack, limit=expected) == expected
    with pytest.raises(GitPackInflated):
        unpacked_bytes(pack, limit=expected - 1)


def test_deltas_count_the_size_they_rebuild() -> None:
    base, target = b"a" * 5000, b"a" * 5000 + b"b" * 100
    delta = b"".join(create_delta(base, target))
    first = entry(BLOB, len(base), zlib.compress(base))
    pack = raw_pack(first, entry(OFS_DELTA, len(delta), zlib.compress(delta), delta_base=len(first)))
    assert unpacked_bytes(pack, limit=1 << 20) == len(base) + len(target)


def test_a_zlib_bomb_is_refused_before_it_inflates() -> None:
    bomb = zlib_bomb_pack(64 << 20)  # 64 MB of zeros in ~64 kB
    assert len(bomb) < 100_000
    with pytest.raises(GitPackInflated, match="unpack into more than 8,000,000 bytes"):
        unpacked_bytes(bomb, limit=8_000_000)


def test_a_delta_that_claims_a_huge_object_is_refused() -> None:
    pack = delta_claim_pack(1 << 40)  # a terabyte claimed by a few bytes
    assert unpacked_bytes(delta_claim_pack(1000), limit=1 << 30) == 1100
    with pytest.raises(GitPackInflated):
        unpacked_bytes(pack, limit=1 << 30)


def test_an_object_inflating_past_its_declared_size_is_invalid() -> None:
    with pytest.raises(GitPackInvalid, match="inflates past the 10 bytes it declares"):
        unpacked_bytes(raw_pack(entry(BLOB, 10, zlib.compress(b"x" * 11))), limit=1 << 20)


@pytest.mark.parametrize(("pack", "message"), [
    (b"PAC", "does not start with a pack header"),
    (b"JUNK" + bytes(8), "does not start with a pack header"),
    (b"PACK" + struct.pack(">II", 4, 0), "pack version 4 is not 2 or 3"),
    (b"PACK" + struct.pack(">II", 2, 1), "ends inside an object header"),
    (b"PACK" + struct.pack(">II", 2, 1) + bytes([0xB5]), "ends inside an object header"),
    (raw_pack(entry(BLOB, 5, b"not zlib at all")), "not zlib"),
    (b"PACK" + struct.pack(">II", 2, 1) + entry(BLOB, 5000, zlib.compress(b"y" * 5000)[:20]),
     "ends inside an object's data"),
])
def test_a_broken_pack_is_invalid(pack: bytes, message: str) -> None:
    with pytest.raises(GitPackInvalid, match=message):
        unpacked_bytes(pack, limit=1 << 20)
