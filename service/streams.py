"""Bodies a piece at a time: the upload bridge, the ndjson line splitter, and hot copies sent out.

The hub is synchronous (SQL, object store) and runs in worker threads; request bodies arrive on the
event loop. Bodies are never held whole: an upload is handed to the hub as an iterator that pulls the
next chunk from the loop, and a commit is split into lines as it arrives.

Uploads pass an `UploadGate`: their own thread pool (a stalled upload holds a thread for as long as it
lasts, so uploads must not share the pool that serves everything else), a bound on concurrent uploads
per client address, and a body that stalls or trickles is cut with 408.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import anyio.from_thread
import anyio.to_thread

from service.errors import BodyTooSlow, PayloadTooLarge, TooManyUploads
from service.options import ServiceOptions
from storage.app.hotfiles import CHUNK_BYTES, HotCopy
from storage.app.hub import HubApi
from storage.app.views import FileInfo
from storage.core.errors import UploadMismatch


class UploadGate:
    """What every upload body passes through (one per app: see the class docstring of the module)."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self._threads: anyio.CapacityLimiter | None = None
        self._active: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def threads(self) -> anyio.CapacityLimiter:
        if self._threads is None:  # made on first use: a limiter belongs to the running event loop
            self._threads = anyio.CapacityLimiter(self.options.upload_threads)
        return self._threads

    @contextmanager
    def admit(self, client: str) -> Iterator[None]:
        """One upload of `client`; TooManyUploads past the per-client bound."""
        with self._lock:
            if self._active[client] >= self.options.uploads_per_client:
                raise TooManyUploads(detail=f"at most {self.options.uploads_per_client} from one client; retry later")
            self._active[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[client] -= 1
                if not self._active[client]:
                    del self._active[client]


async def upload_body(
    body: AsyncIterator[bytes],
    hub: HubApi,
    *,
    sha256: str | None,
    size: int | None,
    limit: int,
    gate: UploadGate,
    client: str,
) -> tuple[FileInfo, int]:
    """Stream `body` into ``hub.upload``; (the stored file, bytes received).

    More bytes than declared (or than `limit`) stop the transfer at once instead of after the fact; a
    body that stalls or trickles below the gate's rate is cut with BodyTooSlow.
    """
    stream = aiter(body)
    bound = limit if size is None else min(size, limit)
    received = 0
    stall = gate.options.upload_stall_seconds
    min_rate = gate.options.upload_min_bytes_per_second

    async def next_chunk() -> bytes | None:
        try:
            with anyio.fail_after(stall):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise BodyTooSlow(detail=f"no bytes for {stall:g} s after {received} bytes") from None

    def chunks() -> Iterator[bytes]:
        nonlocal received
        started = time.monotonic()  # once a thread runs us: time spent waiting for one is not the client's
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            received += len(chunk)
            elapsed = time.monotonic() - started
            if elapsed > stall and received < min_rate * elapsed and received != size:
                raise BodyTooSlow(detail=f"{received} bytes in {elapsed:.0f} s, under {min_rate} bytes/s")
            if received > bound:
                if size is not None and received > size:
                    raise UploadMismatch(detail=f"more than the {size} bytes declared")
                raise PayloadTooLarge(detail=f"uploads are limited to {limit} bytes")
            if chunk:
                yield chunk

    def upload() -> FileInfo:
        return hub.upload(chunks(), expected_sha256=sha256, expected_size=size)

    with gate.admit(client):
        info = await anyio.to_thread.run_sync(upload, limiter=gate.threads)
    # The hub may skip the transfer (it already holds these bytes); the rest of the body must still be
    # read, or the connection breaks while the client is sending and it retries for nothing.
    async for chunk in stream:
        received += len(chunk)
    return info, received


async def ndjson_lines(body: AsyncIterator[bytes], *, max_line: int, max_total: int) -> AsyncIterator[bytes]:
    """Non-empty lines of an ndjson body, each at most `max_line` bytes, all at most `max_total`."""
    pending = bytearray()
    total = 0
    async for chunk in body:
        total += len(chunk)
        if total > max_total:
            raise PayloadTooLarge(detail=f"commit payload larger than {max_total} bytes")
        pending += chunk
        while (newline := pending.find(b"\n")) >= 0:
            line = bytes(pending[:newline]).strip()
            del pending[: newline + 1]
            if len(line) > max_line:
                raise PayloadTooLarge(detail=f"a commit payload line is larger than {max_line} bytes")
            if line:
                yield line
        if len(pending) > max_line:
            raise PayloadTooLarge(detail=f"a commit payload line is larger than {max_line} bytes")
    tail = bytes(pending).strip()
    if tail:
        yield tail


async def hot_body(copy: HotCopy, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes [start, end) of a hot copy (storage/app/hotfiles.py), read by position in a worker thread a
    chunk at a time: no decode, no catalog, the page cache's speed. The copy is closed at the end, or
    when the client goes away."""
    try:
        at = start
        while at < end:
            chunk = await anyio.to_thread.run_sync(os.pread, copy.fd, min(CHUNK_BYTES, end - at), at)
            if not chunk:
                # Checked on open (size): only a copy cut short under us gets here; the client sees a
                # short body, never wrong bytes.
                raise OSError(f"hot copy of {copy.sha256} ended at byte {at}")
            at += len(chunk)
            yield chunk
    finally:
        copy.close()
