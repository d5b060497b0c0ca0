"""A bound on request bodies the routes read whole (JSON), enforced before they are read.

The streaming routes (LFS uploads, ndjson commits) bound their own bodies as they read them and say so
with `@streams_body`; every other body is small JSON, so anything past `limit` bytes is refused with
413 whether or not the client declared a Content-Length, and whoever the caller is. Which route a
request is for is decided by the app's own routing, never by a substring of the path (a repository
named "commit" must not lift the bound).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_STREAMS = "__deltahub_streams_body__"


def streams_body(endpoint: Endpoint) -> Endpoint:
    """Mark a route that reads its body as a stream and bounds it itself."""
    setattr(endpoint, _STREAMS, True)
    return endpoint


class StreamingRoutes:
    """Whether a request goes to a route marked with `streams_body`, matched as the router matches it
    (path pattern and method) against the marked routes of the routers the app includes."""

    def __init__(self, routers: Iterable[APIRouter]) -> None:
        self._routes: list[BaseRoute] = [
            route for router in routers for route in router.routes
            if getattr(getattr(route, "endpoint", None), _STREAMS, False)
        ]

    def __call__(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self._routes)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit: int, streams: Callable[[Scope], bool]) -> None:
        self.app = app
        self.limit = limit
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streams(scope):
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
