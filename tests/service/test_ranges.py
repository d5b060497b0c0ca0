from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import RangeNotSatisfiable
from service.ranges import ByteRange, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 1)),
        ("bytes=2-", 10, ByteRange(2, 10)),
        ("bytes=-3", 10, ByteRange(7, 10)),
        ("bytes=-30", 10, ByteRange(0, 10)),
        ("bytes=5-100", 10, ByteRange(5, 10)),
        (" Bytes = 1 - 2 ", 10, ByteRange(1, 3)),
        (None, 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_served_range_lies_inside_the_file(first: int, last: int, size: int) -> None:
    try:
        served = parse_range(f"bytes={first}-{last}", size)
    except RangeNotSatisfiable:
        assert first >= size
        return
    if served is None:
        assert last < first
        return
    assert 0 <= served.start == first < served.end <= size
    assert served.end == min(last + 1, size)
    assert served.content_range(size) == f"bytes {served.start}-{served.end - 1}/{size}"
