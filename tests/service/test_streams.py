from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import PayloadTooLarge
from service.streams import ndjson_lines


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        yield data[start:cut]
        start = cut


def _lines(data: bytes, cuts: list[int], *, max_line: int = 1000, max_total: int = 10**6) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [line async for line in ndjson_lines(_chunks(data, cuts), max_line=max_line, max_total=max_total)]

    return asyncio.run(collect())


@given(
    st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=10),
    st.lists(st.integers(0, 500), max_size=10),
    st.booleans(),
)
def test_lines_survive_any_chunking(lines: list[bytes], cuts: list[int], final_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    expected = [line.strip() for line in lines if line.strip()]
    assert _lines(data, [c for c in cuts if c <= len(data)]) == expected


def test_bounds() -> None:
    with pytest.raises(PayloadTooLarge, match="line"):
        _lines(b"a" * 50 + b"\n", [10, 20], max_line=40)
    with pytest.raises(PayloadTooLarge, match="line"):
        _lines(b"a" * 50, [], max_line=40)  # no newline at all: refused before the end
    with pytest.raises(PayloadTooLarge, match="payload larger"):
        _lines(b"ab\n" * 100, [30, 60], max_total=100)
