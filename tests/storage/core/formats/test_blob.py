"""Blobs: one segment when small, content-defined chunks when large, always tiling the file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core.errors import IntegrityError
from storage.core.formats.blob import (
    CHUNKED_FROM,
    MAX_CHUNK,
    MAX_SEGMENTS,
    MIN_CHUNK,
    BlobFormat,
    chunk_bounds,
)
from storage.core.formats.registry import get_format

LIMITS = {"max_header_bytes": 1 << 20}


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    return lambda a, b: data[a:b]


def _random(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _digests(data: bytes) -> list[str]:
    layout = BlobFormat().layout(_reader(data), len(data), **LIMITS)
    return [hashlib.sha256(data[s.offset : s.end]).hexdigest() for s in layout.segments]


def test_the_registry_falls_back_to_blob() -> None:
    assert isinstance(get_format("blob"), BlobFormat)


@given(st.binary(max_size=4096))
def test_a_small_blob_is_one_segment(data: bytes) -> None:
    layout = BlobFormat().layout(_reader(data), len(data), **LIMITS)
    assert [(s.offset, s.length, s.name) for s in layout.segments] == [(0, len(data), None)]
    assert layout.tensors is None


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(CHUNKED_FROM, 3 * CHUNKED_FROM))
def test_a_large_blob_is_cut_into_bounded_chunks_that_rebuild_it(seed: int, size: int) -> None:
    data = _random(seed, size)
    layout = BlobFormat().layout(_reader(data), size, **LIMITS)
    # FileLayout checks the tiling itself; here, the bounds and the bytes.
    assert b"".join(data[s.offset : s.end] for s in layout.segments) == data
    assert len(layout.segments) > 1
    for segment in layout.segments[:-1]:
        assert MIN_CHUNK <= segment.length <= MAX_CHUNK
        assert segment.dtype.name == "U8" and segment.shape == (segment.length,) and segment.name is None
    assert 0 < layout.segments[-1].length <= MAX_CHUNK


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), where=st.floats(0.05, 0.95), inserted=st.binary(min_size=1, max_size=5000))
def test_an_insertion_changes_only_the_chunks_around_it(seed: int, where: float, inserted: bytes) -> None:
    data = _random(seed, 6 * CHUNKED_FROM)
    at = int(len(data) * where)
    edited = data[:at] + inserted + data[at:]
    before, after = _digests(data), _digests(edited)
    kept = set(before) & set(after)
    # The edit's chunk, and the few chunks until the cut points line up again, are new; the rest is shared.
    assert len(after) - len(kept) <= 4, (len(before), len(after), len(kept))
    assert len(kept) >= len(before) - 4


def test_the_same_bytes_always_give_the_same_chunks() -> None:
    data = _random(7, 2 * CHUNKED_FROM + 12345)
    pieces_of = [BlobFormat().layout(_reader(data), len(data), **LIMITS).segments for _ in range(2)]
    assert pieces_of[0] == pieces_of[1]


def test_a_huge_blob_keeps_its_segment_count_bounded() -> None:
    assert chunk_bounds(10 << 20) == (MIN_CHUNK, MAX_CHUNK)
    size = 1 << 45  # 32 TiB
    low, high = chunk_bounds(size)
    assert size // low <= MAX_SEGMENTS and high // low == MAX_CHUNK // MIN_CHUNK


def test_bytes_that_read_back_short_are_an_integrity_error() -> None:
    data = _random(3, 2 * CHUNKED_FROM)
    with pytest.raises(IntegrityError, match="read back as"):
        BlobFormat().layout(lambda a, b: data[a : min(b, len(data) - 10)], len(data), **LIMITS)
