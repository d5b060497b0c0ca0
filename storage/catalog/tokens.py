"""Catalog queries for API tokens. Only a token's SHA-256 digest is ever stored or looked up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.catalog.accounts import ScopeRecord, user_id
from storage.catalog.db import unique_conflicts
from storage.catalog.models import Account, Token, TokenScope, utcnow
from storage.core.errors import NotFound


class TokenNotFound(NotFound):
    """no active token named {name!r}"""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    token_hash: str
    can_write: bool
    created_at: datetime
    revoked_at: datetime | None
    user: str = ""
    fine_grained: bool = False
    scopes: tuple[ScopeRecord, ...] = ()

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _record(session: Session, token: Token) -> TokenRecord:
    user = session.scalar(select(Account.name).where(Account.id == token.user_id)) or ""
    scopes = session.scalars(select(TokenScope).where(TokenScope.token_id == token.id).order_by(TokenScope.id))
    return TokenRecord(token.name, token.token_hash, token.can_write, token.created_at, token.revoked_at, user,
                       token.fine_grained, tuple(ScopeRecord(s.namespace, s.name, s.can_write) for s in scopes))


def add_token(
    session: Session, name: str, token_hash: str, *, user: str, can_write: bool,
    scopes: Sequence[ScopeRecord] | None = None,
) -> TokenRecord:
    """A new token row of `user`; Conflict if the name (revoked or not) or the digest is taken.

    With `scopes` (even empty) the token is fine-grained: it reaches only what they name."""
    owner = user_id(session, user)
    token = Token(name=name, token_hash=token_hash, user_id=owner, can_write=can_write,
                  fine_grained=scopes is not None)
    with unique_conflicts(f"a token named {name!r} already exists (names stay taken after revocation)"):
        session.add(token)
        session.flush()
    for scope in scopes or ():
        session.add(TokenScope(token_id=token.id, namespace=scope.namespace, name=scope.name,
                               can_write=scope.can_write))
    session.flush()
    return _record(session, token)


def list_tokens(session: Session, user: str | None = None) -> list[TokenRecord]:
    query = select(Token).order_by(Token.name)
    if user is not None:
        query = query.where(Token.user_id == user_id(session, user))
    return [_record(session, t) for t in session.scalars(query)]


def count_active(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Token).where(Token.revoked_at.is_(None))) or 0


def revoke(session: Session, name: str) -> TokenRecord:
    token = session.scalar(select(Token).where(Token.name == name, Token.revoked_at.is_(None)))
    if token is None:
        raise TokenNotFound(name=name)
    token.revoked_at = utcnow()
    session.flush()
    return _record(session, token)
