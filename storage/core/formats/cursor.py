"""A bounded cursor over a ranged-read callable, for formats whose structure is walked field by field.

GGUF metadata and ONNX protobuf have no length prefix for their whole header: their structure is read
piece by piece. Each ranged read may be a GET on an object store, so the cursor fetches windows and
serves small reads from them, and counts every byte it fetched: a hostile file cannot make the parser
read more than `budget` bytes (the `max_header_bytes` of the format contract) however it nests. A skip
(over tensor data) moves the cursor without fetching anything; the window after a skip starts small and
doubles while reading stays sequential, so the few structure bytes between two tensors (an ONNX
initializer's name and dims) cost about a kilobyte of the budget, not a whole window.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.core.errors import InvalidInput
from storage.core.formats.base import ReadRange

# Bytes fetched per ranged read: small fields cost one read per window, not one each. Windows grow
# from MIN_WINDOW to WINDOW while reads are sequential.
MIN_WINDOW = 1 << 10
WINDOW = 64 << 10


class Cursor:
    def __init__(
        self,
        read: ReadRange,
        size: int,
        *,
        budget: int,
        truncated: Callable[[int, int], InvalidInput],
        over_budget: Callable[[int], InvalidInput],
        window: int = WINDOW,
    ) -> None:
        self._read = read
        self.size = size
        self.pos = 0
        self._budget = budget
        self._fetched = 0
        self._truncated = truncated  # (position, bytes wanted) -> the format's error
        self._over_budget = over_budget  # (limit) -> the format's error
        self._max_window = window
        self._window = min(MIN_WINDOW, window)
        self._buf = b""
        self._buf_start = 0

    def take(self, n: int) -> bytes:
        """The next `n` bytes; the format's truncation error when the file ends first."""
        if n < 0 or self.pos + n > self.size:
            raise self._truncated(self.pos, n)
        start = self.pos - self._buf_start
        if start < 0 or start + n > len(self._buf):
            self._fill(n)
            start = 0
        self.pos += n
        return self._buf[start : start + n]

    def peek(self, n: int) -> bytes:
        """The next `n` bytes, without moving past them."""
        data = self.take(n)
        self.pos -= n
        return data

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self._truncated(self.pos, n)
        self.pos += n

    def _fill(self, n: int) -> None:
        sequential = self.pos == self._buf_start + len(self._buf)
        self._window = min(self._max_window, self._window * 2) if sequential else min(MIN_WINDOW, self._max_window)
        end = min(self.size, self.pos + max(n, self._window))
        if self._fetched + (end - self.pos) > self._budget:
            # Only what is needed may still fit; a window past the budget is not yet a violation.
            end = self.pos + n
            if self._fetched + n > self._budget:
                raise self._over_budget(self._budget)
        data = self._read(self.pos, end)
        if len(data) != end - self.pos:
            raise self._truncated(self.pos, n)
        self._fetched += len(data)
        self._buf, self._buf_start = data, self.pos
