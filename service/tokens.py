"""API tokens kept in the catalog: minted here, checked on every request, never stored in the clear.

A token is ``dh_`` followed by 256 random bits (URL-safe base64). The catalog keeps its SHA-256 only:
a leaked catalog or backup yields no usable token, and a stolen token is cut off by revoking its name.
Tokens are never logged; messages name a token by its name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from service.auth import TokenInfo
from storage.catalog import tokens as catalog_tokens
from storage.catalog.tokens import TokenRecord
from storage.core.errors import InvalidInput

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

TOKEN_PREFIX = "dh_"
# 32 random bytes: beyond brute force, and as strong as the SHA-256 digest that stands for it.
TOKEN_BYTES = 32
MAX_NAME_LENGTH = 128
ADMIN_TOKEN_NAME = "admin"
ADMIN_TOKEN_FILE = "admin-token"

SessionScope = Callable[[], AbstractContextManager["Session"]]


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    """The hex SHA-256 the catalog stores (a token is high-entropy: no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_token_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable() or name != name.strip():
        raise InvalidInput(detail=f"token name {name!r}: 1-{MAX_NAME_LENGTH} printable characters, no edge spaces")
    return name


class CatalogTokenStore:
    """The TokenStore the HTTP service checks bearer tokens with (see service.auth.TokenStore)."""

    def __init__(self, session: SessionScope) -> None:
        self._session = session

    def verify(self, token: str) -> TokenInfo | None:
        digest = token_digest(token)
        with self._session() as s:
            record = catalog_tokens.find_active(s, digest)
        # The lookup compares digests, never the secret; the constant-time comparison guards against a
        # database whose index comparison short-circuits.
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            return None
        return TokenInfo(name=record.name, can_write=record.can_write)

    def create(self, name: str, *, can_write: bool) -> str:
        """A new token for `name`; the only time the token itself exists outside the caller's hands."""
        token = new_token()
        with self._session() as s:
            catalog_tokens.add_token(s, check_token_name(name), token_digest(token), can_write=can_write)
        return token

    def list(self) -> list[TokenRecord]:
        with self._session() as s:
            return catalog_tokens.list_tokens(s)

    def revoke(self, name: str) -> TokenRecord:
        with self._session() as s:
            return catalog_tokens.revoke(s, name)

    def has_active(self) -> bool:
        with self._session() as s:
            return catalog_tokens.count_active(s) > 0


def write_secret_file(path: Path, secret: str) -> None:
    """Write `secret` to `path` readable by its owner only; the file never exists with looser rights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    os.replace(partial, path)


def ensure_admin_token(store: CatalogTokenStore, data_dir: Path) -> Path | None:
    """First start of an embedded hub: mint a write token and write it to a 0600 file in the data dir.

    Returns the file's path when a token was created, None when the hub already has an active token.
    """
    if store.has_active():
        return None
    names = {record.name for record in store.list()}
    name = ADMIN_TOKEN_NAME
    suffix = 1
    while name in names:  # an earlier admin token was revoked; names stay taken
        suffix += 1
        name = f"{ADMIN_TOKEN_NAME}-{suffix}"
    path = data_dir / ADMIN_TOKEN_FILE
    write_secret_file(path, store.create(name, can_write=True))
    return path
