"""Request bodies read a piece at a time: the upload bridge and the ndjson line splitter.

The hub is synchronous (SQL, object store) and runs in worker threads; request bodies arrive on the
event loop. Bodies are never held whole: an upload is handed to the hub as an iterator that pulls the
next chunk from the loop, and a commit is split into lines as it arrives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.from_thread
import anyio.to_thread

from service.errors import PayloadTooLarge
from storage.app.hub import HubApi
from storage.app.views import FileInfo
from storage.core.errors import UploadMismatch


async def upload_body(
    body: AsyncIterator[bytes], hub: HubApi, *, sha256: str | None, size: int | None, limit: int
) -> tuple[FileInfo, int]:
    """Stream `body` into ``hub.upload``; (the stored file, bytes received).

    More bytes than declared (or than `limit`) stop the transfer at once instead of after the fact.
    """
    stream = aiter(body)
    bound = limit if size is None else min(size, limit)
    received = 0

    async def next_chunk() -> bytes | None:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        nonlocal received
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            received += len(chunk)
            if received > bound:
                if size is not None and received > size:
                    raise UploadMismatch(detail=f"more than the {size} bytes declared")
                raise PayloadTooLarge(detail=f"uploads are limited to {limit} bytes")
            if chunk:
                yield chunk

    def upload() -> FileInfo:
        return hub.upload(chunks(), expected_sha256=sha256, expected_size=size)

    info = await anyio.to_thread.run_sync(upload)
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
