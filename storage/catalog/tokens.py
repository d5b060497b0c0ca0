"""Catalog queries for API tokens. Only a token's SHA-256 digest is ever stored or looked up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.catalog.db import unique_conflicts
from storage.catalog.models import Token, utcnow
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

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _record(token: Token) -> TokenRecord:
    return TokenRecord(token.name, token.token_hash, token.can_write, token.created_at, token.revoked_at)


def add_token(session: Session, name: str, token_hash: str, *, can_write: bool) -> TokenRecord:
    """A new token row; Conflict if the name (revoked or not) or the digest is taken."""
    token = Token(name=name, token_hash=token_hash, can_write=can_write)
    with unique_conflicts(f"a token named {name!r} already exists (names stay taken after revocation)"):
        session.add(token)
        session.flush()
    return _record(token)


def find_active(session: Session, token_hash: str) -> TokenRecord | None:
    """The unrevoked token with this digest: an indexed equality lookup on the digest, not the secret."""
    token = session.scalar(select(Token).where(Token.token_hash == token_hash, Token.revoked_at.is_(None)))
    return _record(token) if token is not None else None


def list_tokens(session: Session) -> list[TokenRecord]:
    return [_record(t) for t in session.scalars(select(Token).order_by(Token.name))]


def count_active(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Token).where(Token.revoked_at.is_(None))) or 0


def revoke(session: Session, name: str) -> TokenRecord:
    token = session.scalar(select(Token).where(Token.name == name, Token.revoked_at.is_(None)))
    if token is None:
        raise TokenNotFound(name=name)
    token.revoked_at = utcnow()
    session.flush()
    return _record(token)
