"""A bound on request bodies the routes read whole (JSON), enforced before they are read.

The streaming routes (LFS uploads, ndjson commits) bound their own bodies as they read them; every
other body is small JSON, so anything past `limit` bytes is refused with 413 whether or not the
client declared a Content-Length, and whoever the caller is.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes that stream and bound their own bodies: ndjson commits, LFS object PUTs, Xet CAS uploads.
STREAMING_SUFFIXES = ("/commit/", "/api/v1/lfs/objects/", "/api/v1/xet/", "/v1/telemetry")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, streaming: tuple[str, ...] = STREAMING_SUFFIXES) -> None:
        self.app = app
        self.limit = limit
        self.streaming = streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(part in scope["path"] for part in self.streaming):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        refused = False
        answered = False

        async def bounded() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading; whatever the app answers to the cut body is replaced by a 413.
                    refused = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def answer(message: Message) -> None:
            nonlocal answered
            if not refused:
                await send(message)
            elif not answered:
                answered = True
                await self._refuse(send)

        await self.app(scope, bounded, answer)
        if refused and not answered:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"request body too large: more than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
