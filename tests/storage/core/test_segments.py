"""Hashing segments in one pass: every segment's digest, and the whole file checked on the way."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.errors import IntegrityError
from storage.core.segments import Segment, hash_segments, opaque


def cut(data: bytes, points: list[int]) -> list[Segment]:
    edges = sorted({0, len(data), *[p % (len(data) + 1) for p in points]})
    return [opaque(i, a, b - a) for i, (a, b) in enumerate(itertools.pairwise(edges))]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(0, 5000), max_size=8), st.integers(1, 700))
def test_each_segment_hashes_to_its_bytes_whatever_the_chunking(data: bytes, points: list[int], size: int) -> None:
    segments = cut(data, points)
    digests = hash_segments(chunks(data, size), segments, len(data), hashlib.sha256(data).hexdigest())
    assert digests == [hashlib.sha256(data[s.offset : s.end]).hexdigest() for s in segments]


def test_changed_short_or_long_files_are_integrity_errors() -> None:
    data = b"0123456789" * 10
    segments = cut(data, [30, 60])
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(IntegrityError, match="changed"):
        hash_segments([data[:-1] + b"x"], segments, len(data), sha)
    with pytest.raises(IntegrityError, match="changed"):
        hash_segments([data[:-1]], segments, len(data), sha)
    with pytest.raises(IntegrityError, match="past"):
        hash_segments([data + b"!"], segments, len(data), sha)


def test_empty_segments_hash_as_empty() -> None:
    segments = [opaque(0, 0, 0), opaque(1, 0, 3), opaque(2, 3, 0)]
    digests = hash_segments([b"abc"], segments, 3, hashlib.sha256(b"abc").hexdigest())
    assert digests[0] == digests[2] == hashlib.sha256(b"").hexdigest()
