"""Block checksums of staged uploads: any split of the stream gives the same sums, any range reads back
exactly, and damage anywhere in the touched blocks is caught before a byte of the block is yielded."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.blocksums import BlockSums, CorruptStagedFile, block_span, checked_range, sums_of

BLOCK = 64  # small blocks, so short examples cross many boundaries


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read(data: bytes, start: int, end: int, sums: bytes, cuts: list[int]) -> bytes:
    first, stop = block_span(start, end, len(data), BLOCK)
    chunks = pieces(data[first:stop], cuts)
    return b"".join(checked_range(chunks, sums=sums, sha256="f" * 64, start=start, end=end, size=len(data),
                                  block_bytes=BLOCK))


@given(data=st.binary(max_size=1000), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_sums_do_not_depend_on_how_the_stream_is_cut(data: bytes, cuts: list[int]) -> None:
    acc = BlockSums(BLOCK)
    for piece in pieces(data, cuts):
        acc.update(piece)
    assert acc.digest() == sums_of(data, BLOCK)
    assert len(acc.digest()) == 4 * -(-len(data) // BLOCK)


@given(data=st.binary(min_size=1, max_size=1000), bounds=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
       cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_any_range_reads_back_exactly(data: bytes, bounds: tuple[int, int], cuts: list[int]) -> None:
    start, end = sorted(min(b, len(data)) for b in bounds)
    assert read(data, start, end, sums_of(data, BLOCK), cuts) == data[start:end]


@given(data=st.binary(min_size=1, max_size=1000), flip=st.integers(min_value=0), bit=st.integers(0, 7),
       cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_a_flipped_bit_in_a_touched_block_is_caught_before_that_block_is_yielded(
    data: bytes, flip: int, bit: int, cuts: list[int]
) -> None:
    sums = sums_of(data, BLOCK)
    position = flip % len(data)
    damaged = bytearray(data)
    damaged[position] ^= 1 << bit
    served = bytearray()
    with pytest.raises(CorruptStagedFile) as err:
        for piece in checked_range(pieces(bytes(damaged), cuts), sums=sums, sha256="f" * 64, start=0,
                                   end=len(data), size=len(data), block_bytes=BLOCK):
            served += piece
    # Everything served came before the damaged block, and is right.
    assert len(served) == position - position % BLOCK and bytes(served) == data[: len(served)]
    assert f"block {position // BLOCK} " in err.value.message


def test_a_truncated_object_is_caught() -> None:
    data = os.urandom(5 * BLOCK + 7)
    sums = sums_of(data, BLOCK)
    with pytest.raises(CorruptStagedFile):
        b"".join(checked_range([data[:-7]], sums=sums, sha256="f" * 64, start=0, end=len(data), size=len(data),
                               block_bytes=BLOCK))
