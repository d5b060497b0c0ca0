"""Routing on the raw request path, so that an encoded '/' stays inside one path segment.

The Hugging Face client puts revisions (``refs%2Fpr%2F1``) and tree paths (``a%2Fb``) in one
percent-encoded segment. ASGI servers decode ``%2F`` before routing, which would split such a segment
and make ``/tree/refs/pr/1`` ambiguous. The middleware routes on a path that is decoded except for
``%2F`` and ``%25``; route parameters are therefore still quoted and :func:`param` unquotes them once,
exactly.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

_KEEP_ENCODED = re.compile(r"(%2[Ff]|%25)")


def routing_path(raw_path: bytes) -> str:
    """The raw path decoded except ``%2F`` and ``%25`` (normalised to upper case)."""
    pieces = _KEEP_ENCODED.split(raw_path.decode("latin-1"))
    return "".join(piece.upper() if i % 2 else unquote(piece) for i, piece in enumerate(pieces))


def param(value: str) -> str:
    """A route parameter matched on :func:`routing_path`, decoded."""
    return unquote(value)


class EncodedSlashRouting:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw:
            scope = {**scope, "path": routing_path(raw.split(b"?", 1)[0])}
        await self.app(scope, receive, send)


def repo_id_from(path_params: dict[str, str]) -> str:
    """The Hub addresses repositories as "namespace/name" in every route the client uses."""
    return f"{param(path_params['namespace'])}/{param(path_params['name'])}"


class _RepoTypes(Convertor[str]):
    """A path segment naming a repository type, as "/api/models/..." does (only its regex matters)."""

    regex = "models|datasets|spaces"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# "/api/{kind:repotype}/..." is the Hub's "/api/models/...", "/api/datasets/...", "/api/spaces/...";
# "/{kind:repoprefix}/..." is the prefix of a non-model repository's download and LFS URLs.
class _RepoPrefixes(_RepoTypes):
    regex = "datasets|spaces"


# "/api/{kind:storedtype}" names only the kinds deltahub stores (the listings: "/api/spaces" stays unrouted).
class _StoredTypes(_RepoTypes):
    regex = "models|datasets"


register_url_convertor("repotype", _RepoTypes())
register_url_convertor("repoprefix", _RepoPrefixes())
register_url_convertor("storedtype", _StoredTypes())
