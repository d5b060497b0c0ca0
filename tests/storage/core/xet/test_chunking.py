"""The content-defined chunker: a per-byte reference, split invariance, size bounds, speed."""

from __future__ import annotations

import itertools
import random
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core.xet.chunking import MAX_CHUNK, MIN_CHUNK, TABLE, Chunker, chunk_boundaries, chunks_of

_MASK = 0xFFFF_0000_0000_0000
_U64 = (1 << 64) - 1
_GEAR = [int(value) for value in TABLE]


def reference_boundaries(data: bytes, min_chunk: int = MIN_CHUNK, max_chunk: int = MAX_CHUNK) -> list[int]:
    """The spec's algorithm, byte by byte: the slow, obviously right version the fast one must match."""
    ends, h, start = [], 0, 0
    for position, byte in enumerate(data):
        h = ((h << 1) + _GEAR[byte]) & _U64
        size = position - start + 1
        if size < min_chunk:
            continue
        if size >= max_chunk or h & _MASK == 0:
            ends.append(position + 1)
            start, h = position + 1, 0
    if start < len(data):
        ends.append(len(data))
    return ends


def _mixed(seed: int, size: int) -> bytes:
    """Random bytes with runs of zeros and repeats, so boundaries come from the hash and from the cap."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.6:
            out += rng.randbytes(rng.randint(1, 150_000))
        elif kind < 0.8:
            out += bytes(rng.randint(1, 300_000))
        elif out:
            begin = rng.randrange(len(out))
            out += out[begin : begin + rng.randint(1, 100_000)]
    return bytes(out[:size])


def test_matches_the_per_byte_reference() -> None:
    data = _mixed(1, 1_500_000)
    assert chunk_boundaries(data) == reference_boundaries(data)


def test_matches_the_reference_with_small_bounds() -> None:
    # Small bounds give many boundaries of both kinds in little data.
    data = _mixed(2, 300_000)
    chunker = Chunker(min_chunk=64, max_chunk=3000)
    ends, position = [], 0
    for chunk in [*chunker.feed(data), *chunker.finish()]:
        position += len(chunk)
        ends.append(position)
    assert ends == reference_boundaries(data, 64, 3000)


@settings(max_examples=30)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 300_000), max_size=12))
def test_boundaries_do_not_depend_on_how_the_input_is_split(seed: int, cuts: list[int]) -> None:
    data = _mixed(seed, 600_000)
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert chunks_of(pieces) == chunks_of([data])


def test_tiny_pieces_give_the_same_chunks() -> None:
    data = _mixed(3, 200_000)
    rng = random.Random(4)
    pieces, position = [], 0
    while position < len(data):
        step = rng.choice([1, 2, 63, 64, 65, 4096])
        pieces.append(data[position : position + step])
        position += step
    assert chunks_of(pieces) == chunks_of([data])


@settings(max_examples=20)
@given(st.integers(0, 2**32), st.integers(0, 1_200_000))
def test_sizes_stay_within_bounds(seed: int, size: int) -> None:
    chunks = chunks_of([_mixed(seed, size)])
    assert b"".join(chunks) == _mixed(seed, size)
    assert all(MIN_CHUNK <= len(chunk) <= MAX_CHUNK for chunk in chunks[:-1])
    assert all(0 < len(chunk) <= MAX_CHUNK for chunk in chunks[-1:])


def test_edges() -> None:
    assert chunk_boundaries(b"") == []
    assert chunk_boundaries(b"x") == [1]
    assert chunk_boundaries(bytes(MAX_CHUNK)) == [MAX_CHUNK]
    assert chunk_boundaries(bytes(MAX_CHUNK + 1)) == [MAX_CHUNK, MAX_CHUNK + 1]
    chunker = Chunker()
    assert chunker.feed(b"") == []
    assert chunker.finish() == []


def test_finish_resets_the_chunker() -> None:
    chunker = Chunker()
    data = _mixed(5, 300_000)
    first = [*chunker.feed(data), *chunker.finish()]
    assert [*chunker.feed(data), *chunker.finish()] == first


def test_speed() -> None:
    """Measures MB/s (printed with -s); the bound only catches a regression to a per-byte loop."""
    data = np.random.default_rng(0).integers(0, 256, 32 << 20, dtype=np.uint8).tobytes()
    began = time.perf_counter()
    chunk_boundaries(data)
    rate = len(data) / (time.perf_counter() - began) / 1e6
    print(f"chunker: {rate:.0f} MB/s")
    assert rate > 5
