"""HTTP byte ranges (RFC 9110 §14): one range per request, as download clients send."""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.errors import RangeNotSatisfiable

_SINGLE_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to serve, or None to serve the whole file.

    A missing, malformed or multi-range header is ignored (the RFC lets a server answer 200 with the
    whole representation); a well-formed range that starts past the end is RangeNotSatisfiable.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(detail=f"{header.strip()} of a {size}-byte file")
        return ByteRange(max(size - suffix, 0), size)
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # last < first: syntactically invalid, so ignored
    if start >= size:
        raise RangeNotSatisfiable(detail=f"{header.strip()} of a {size}-byte file")
    return ByteRange(start, min(end, size))
