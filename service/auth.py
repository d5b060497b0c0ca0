"""Who is calling: bearer tokens, checked by an injected token store.

A valid token names a user and carries what the access policy (service/policy.py) needs: the user's
hub-administrator flag and organization roles, the token's role (read or write) and, for a fine-grained
token, its scopes. What a caller may do is decided there, never here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from service.errors import INVALID_CREDENTIALS, NotSupported, Unauthorized


@dataclass(frozen=True, slots=True)
class Scope:
    """One entry of a fine-grained token: a namespace (name None) or one of its repositories."""

    namespace: str
    name: str | None = None
    can_write: bool = False


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A user acting through one token."""

    name: str  # the user (commit author, the namespace create_repo defaults to)
    can_write: bool  # the token's role: write, or read (a fine-grained token's scopes decide instead)
    hub_admin: bool = False
    orgs: tuple[tuple[str, str], ...] = ()  # (organization, role: read | write | admin)
    scopes: tuple[Scope, ...] | None = None  # None: not fine-grained
    token_name: str = ""

    @property
    def may_write_somewhere(self) -> bool:
        if self.scopes is not None:
            return any(scope.can_write for scope in self.scopes)
        return self.can_write


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
    """The token of an ``Authorization: Bearer <token>`` header, or of ``Basic`` credentials (git and
    git-lfs send ``user:token``; the token is the password, the user name is ignored); Unauthorized for
    any other scheme or a malformed header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "basic" and token:
        token = _basic_password(token)
    elif scheme.lower() != "bearer":
        token = ""
    if not token:
        raise Unauthorized(INVALID_CREDENTIALS)
    return token


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2].strip()


def identify(tokens: TokenStore, authorization: str | None) -> TokenInfo | None:
    """None for an anonymous caller; Unauthorized for a token the store does not know."""
    token = bearer_token(authorization)
    if token is None:
        return None
    info = tokens.verify(token)
    if info is None:
        raise Unauthorized(INVALID_CREDENTIALS)
    return info


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
