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

from service.auth import Scope, TokenInfo
from storage.catalog import accounts as catalog_accounts
from storage.catalog import tokens as catalog_tokens
from storage.catalog.accounts import ScopeRecord
from storage.catalog.models import AccountKind
from storage.catalog.tokens import TokenRecord
from storage.core.errors import InvalidInput

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

TOKEN_PREFIX = "dh_"
# 32 random bytes: beyond brute force, and as strong as the SHA-256 digest that stands for it.
TOKEN_BYTES = 32
MAX_NAME_LENGTH = 128
ADMIN_TOKEN_NAME = "admin"
# The hub administrator an embedded hub starts with, and the owner migrated tokens are given.
ADMIN_USER = "admin"
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
        """The token's user and rights; None for an unknown or revoked token or a disabled user."""
        digest = token_digest(token)
        with self._session() as s:
            found = catalog_accounts.identity(s, digest)
        # The lookup compares digests, never the secret; the constant-time comparison guards against a
        # database whose index comparison short-circuits.
        if found is None or not hmac.compare_digest(found.token_hash, digest):
            return None
        scopes = tuple(Scope(e.namespace, e.name, e.can_write) for e in found.scopes) if found.fine_grained else None
        return TokenInfo(name=found.user, can_write=found.can_write, hub_admin=found.hub_admin, orgs=found.orgs,
                         scopes=scopes, token_name=found.token_name)

    def create(
        self, name: str, *, can_write: bool, user: str = ADMIN_USER, scopes: tuple[Scope, ...] | None = None
    ) -> str:
        """A new token `name` of `user`; the only time the token itself exists outside the caller's hands.

        With `scopes` the token is fine-grained: it reaches only what they name (read, or write where a
        scope says so), never more than the user may."""
        token = new_token()
        entries = None if scopes is None else [ScopeRecord(e.namespace, e.name, e.can_write) for e in scopes]
        with self._session() as s:
            catalog_tokens.add_token(s, check_token_name(name), token_digest(token), user=user,
                                     can_write=can_write or any(e.can_write for e in scopes or ()), scopes=entries)
        return token

    def list(self, user: str | None = None) -> list[TokenRecord]:
        with self._session() as s:
            return catalog_tokens.list_tokens(s, user)

    def revoke(self, name: str) -> TokenRecord:
        with self._session() as s:
            return catalog_tokens.revoke(s, name)

    def has_active(self) -> bool:
        with self._session() as s:
            return catalog_tokens.count_active(s) > 0

    def ensure_admin_user(self) -> str:
        """The name of a hub administrator, creating user "admin" when the hub has none."""
        with self._session() as s:
            found = catalog_accounts.first_hub_admin(s)
            if found is not None:
                return found.name
            existing = catalog_accounts.get_account(s, ADMIN_USER)
        if existing is not None:
            raise catalog_accounts.AccountNotFound(kind="enabled hub administrator", name=ADMIN_USER)
        with self._session() as s:
            catalog_accounts.create_account(s, ADMIN_USER, AccountKind.USER, hub_admin=True)
        return ADMIN_USER


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
    """First start of an embedded hub: create the admin user (a hub administrator) and its write token,
    written to a 0600 file in the data dir.

    Returns the file's path when a token was created, None when the hub already has an active token.
    """
    if store.has_active():
        return None
    admin = store.ensure_admin_user()
    names = {record.name for record in store.list()}
    name = ADMIN_TOKEN_NAME
    suffix = 1
    while name in names:  # an earlier admin token was revoked; names stay taken
        suffix += 1
        name = f"{ADMIN_TOKEN_NAME}-{suffix}"
    path = data_dir / ADMIN_TOKEN_FILE
    write_secret_file(path, store.create(name, can_write=True, user=admin))
    return path
