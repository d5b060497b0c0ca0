"""Who is calling: bearer tokens, checked by an injected token store.

Writes need a token that may write. Reads of public repositories need none; a private repository is
answered with RepoNotFound to anyone without a valid token, so its existence does not leak.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from service.errors import INVALID_CREDENTIALS, Forbidden, NotSupported, Unauthorized
from storage.app.hub import HubApi
from storage.app.views import RepoInfo
from storage.core.errors import RepoNotFound


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    can_write: bool


class TokenStore(Protocol):
    def verify(self, token: str) -> TokenInfo | None:
        """The token's owner and rights, or None when the token is unknown or revoked."""
        ...


class StaticTokenStore:
    """Tokens fixed at start-up (development, tests, one admin token from the environment).

    Only digests are kept, and lookup is by digest: the time taken says nothing about how much of a
    guess matched.
    """

    def __init__(self, tokens: Mapping[str, TokenInfo]) -> None:
        self._by_digest = {_digest(token): info for token, info in tokens.items()}

    def verify(self, token: str) -> TokenInfo | None:
        return self._by_digest.get(_digest(token))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; Unauthorized for any other scheme."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(INVALID_CREDENTIALS)
    return token


def identify(tokens: TokenStore, authorization: str | None) -> TokenInfo | None:
    """None for an anonymous caller; Unauthorized for a token the store does not know."""
    token = bearer_token(authorization)
    if token is None:
        return None
    info = tokens.verify(token)
    if info is None:
        raise Unauthorized(INVALID_CREDENTIALS)
    return info


def require_writer(caller: TokenInfo | None) -> TokenInfo:
    if caller is None:
        raise Unauthorized(detail="this operation needs a write token (Authorization: Bearer <token>)")
    if not caller.can_write:
        raise Forbidden(detail=f"token {caller.name!r} is read-only")
    return caller


def may_read(caller: TokenInfo | None, *, private: bool) -> bool:
    """The one read rule, shared by the API and the web pages: private repositories need a valid token
    (until users and organisations own them)."""
    return not private or caller is not None


def may_read_private(caller: TokenInfo | None) -> bool:
    """Whether the caller sees private repositories at all (listings filter by it)."""
    return may_read(caller, private=True)


def readable_repo(hub: HubApi, repo_id: str, caller: TokenInfo | None, *, repo_type: str = "model") -> RepoInfo:
    """The repository if the caller may read it; RepoNotFound otherwise, exactly as if it did not exist."""
    repo = hub.get_repo(repo_id, repo_type=repo_type)
    if not may_read(caller, private=repo.private):
        raise RepoNotFound(repo_id=repo_id)
    return repo


SPACES_REFUSED = "Spaces (deltahub stores model and dataset repositories)"


def repo_type_of(kind: str | None) -> str:
    """The repository type a request names, as the route prefix ("models", "datasets") or a body's
    "type" ("model", "dataset"); None is a model. Spaces are refused (501) with a clear message."""
    if kind in (None, "model", "models"):
        return "model"
    if kind in ("dataset", "datasets"):
        return "dataset"
    if kind in ("space", "spaces"):
        raise NotSupported(detail=SPACES_REFUSED)
    raise NotSupported(detail=f"repository type {kind!r} (deltahub stores models and datasets)")
