"""Mangled uploads: whatever bytes arrive, the parsers answer with a format error, never a crash."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from storage.core.xet.errors import XetFormatError
from storage.core.xet.shard import parse_shard
from storage.core.xet.xorb import parse_xorb

GOLDEN = Path(__file__).parent / "golden"
XORBS = [path.read_bytes() for path in sorted(GOLDEN.glob("*.xorb")) if path.stat().st_size < 30_000]
SHARDS = [path.read_bytes() for path in sorted(GOLDEN.glob("*.shard"))]


@st.composite
def mangled(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _survives(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(XetFormatError):
        parse(data)


@given(mangled(XORBS))
def test_mangled_xorbs(data: bytes) -> None:
    _survives(parse_xorb, data)


@given(mangled(SHARDS))
def test_mangled_shards(data: bytes) -> None:
    _survives(parse_shard, data)


@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _survives(parse_xorb, data)
    _survives(parse_shard, data)
