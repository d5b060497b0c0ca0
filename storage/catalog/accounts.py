"""Catalog queries for users, organizations, memberships, and what a token may do.

Users and organizations share one name space (the namespaces of repositories). `identity` answers, in
one session, everything an access decision needs about a token: its user, the user's organizations and
roles, and a fine-grained token's scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.catalog.db import unique_conflicts
from storage.catalog.models import (
    Account,
    AccountKind,
    FileObject,
    Membership,
    Repository,
    Role,
    Token,
    TokenScope,
    TreeEntry,
    utcnow,
)
from storage.core.errors import InvalidInput, NotFound


class AccountNotFound(NotFound):
    """no {kind} named {name!r}"""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    name: str
    kind: str
    hub_admin: bool
    disabled_at: datetime | None
    quota_bytes: int | None
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class ScopeRecord:
    namespace: str
    name: str | None  # None: every repository of the namespace
    can_write: bool


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """An active token of an enabled user, and what decides its access."""

    token_name: str
    token_hash: str
    user: str
    hub_admin: bool
    can_write: bool
    fine_grained: bool
    scopes: tuple[ScopeRecord, ...]
    orgs: tuple[tuple[str, str], ...]  # (organization, role)


def _record(account: Account) -> AccountRecord:
    return AccountRecord(account.name, account.kind, account.hub_admin, account.disabled_at, account.quota_bytes,
                         account.created_at)


def _find(session: Session, name: str, kind: str | None = None) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None or (kind is not None and account.kind != kind):
        raise AccountNotFound(kind="organization" if kind == AccountKind.ORG else kind or "account", name=name)
    return account


def create_account(session: Session, name: str, kind: str, *, hub_admin: bool = False) -> AccountRecord:
    """A new user or organization; Conflict when any account (user or organization) has the name."""
    if kind == AccountKind.ORG and hub_admin:
        raise InvalidInput(detail="only users can be hub administrators")
    account = Account(name=name, kind=AccountKind(kind), hub_admin=hub_admin)
    with unique_conflicts(f"the name {name!r} is taken by a user or an organization"):
        session.add(account)
        session.flush()
    return _record(account)


def get_account(session: Session, name: str) -> AccountRecord | None:
    account = session.scalar(select(Account).where(Account.name == name))
    return _record(account) if account is not None else None


def list_accounts(session: Session, kind: str | None = None) -> list[AccountRecord]:
    query = select(Account).order_by(Account.name)
    if kind is not None:
        query = query.where(Account.kind == kind)
    return [_record(a) for a in session.scalars(query)]


def set_disabled(session: Session, name: str, disabled: bool) -> AccountRecord:
    user = _find(session, name, AccountKind.USER)
    user.disabled_at = (user.disabled_at or utcnow()) if disabled else None
    session.flush()
    return _record(user)


def set_quota(session: Session, name: str, quota_bytes: int | None) -> AccountRecord:
    if quota_bytes is not None and quota_bytes < 0:
        raise InvalidInput(detail=f"a quota is a number of bytes >= 0, not {quota_bytes}")
    account = _find(session, name)
    account.quota_bytes = quota_bytes
    session.flush()
    return _record(account)


def first_hub_admin(session: Session) -> AccountRecord | None:
    account = session.scalar(
        select(Account).where(Account.hub_admin.is_(True), Account.disabled_at.is_(None)).order_by(Account.id)
    )
    return _record(account) if account is not None else None


def set_member(session: Session, org: str, user: str, role: str) -> None:
    """Add `user` to `org` with `role`, or change the role of a member."""
    org_row, user_row = _find(session, org, AccountKind.ORG), _find(session, user, AccountKind.USER)
    role = Role(role)
    found = session.get(Membership, (org_row.id, user_row.id))
    if found is None:
        session.add(Membership(org_id=org_row.id, user_id=user_row.id, role=role))
    else:
        found.role = role
    session.flush()


def remove_member(session: Session, org: str, user: str) -> None:
    org_row, user_row = _find(session, org, AccountKind.ORG), _find(session, user, AccountKind.USER)
    gone = session.execute(
        delete(Membership).where(Membership.org_id == org_row.id, Membership.user_id == user_row.id)
    )
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise NotFound(detail=f"{user!r} is not a member of {org!r}")


def members(session: Session, org: str) -> list[tuple[str, str]]:
    org_row = _find(session, org, AccountKind.ORG)
    rows = session.execute(
        select(Account.name, Membership.role).join(Membership, Membership.user_id == Account.id)
        .where(Membership.org_id == org_row.id).order_by(Account.name)
    )
    return [(name, role) for name, role in rows]


def user_id(session: Session, name: str) -> int:
    return _find(session, name, AccountKind.USER).id


def identity(session: Session, token_hash: str) -> IdentityRecord | None:
    """The unrevoked token with this digest, if its user is enabled: an indexed equality lookup on the
    digest (never the secret), then the user's organizations and the token's scopes."""
    row = session.execute(
        select(Token, Account).join(Account, Account.id == Token.user_id)
        .where(Token.token_hash == token_hash, Token.revoked_at.is_(None), Account.disabled_at.is_(None))
    ).first()
    if row is None:
        return None
    token, user = row
    orgs = session.execute(
        select(Account.name, Membership.role).join(Membership, Membership.org_id == Account.id)
        .where(Membership.user_id == user.id).order_by(Account.name)
    )
    scopes = session.scalars(select(TokenScope).where(TokenScope.token_id == token.id).order_by(TokenScope.id))
    return IdentityRecord(
        token_name=token.name, token_hash=token.token_hash, user=user.name, hub_admin=user.hub_admin,
        can_write=token.can_write, fine_grained=token.fine_grained,
        scopes=tuple(ScopeRecord(s.namespace, s.name, s.can_write) for s in scopes),
        orgs=tuple((name, role) for name, role in orgs),
    )


def namespace_logical_bytes(session: Session, namespace: str) -> int:
    """Logical bytes of a namespace: per repository, every distinct file any of its commits names (the
    definition of storage/catalog/accounting.py), summed over the namespace's repositories."""
    per_repo = (
        select(TreeEntry.repo_id, TreeEntry.file_sha256)
        .join(Repository, Repository.id == TreeEntry.repo_id)
        .where(Repository.namespace == namespace)
        .distinct()
        .subquery()
    )
    total = session.scalar(
        select(func.coalesce(func.sum(FileObject.size), 0)).select_from(per_repo)
        .join(FileObject, FileObject.sha256 == per_repo.c.file_sha256)
    )
    return int(total or 0)


def quota_of(session: Session, namespace: str) -> int | None:
    return session.scalar(select(Account.quota_bytes).where(Account.name == namespace))


def named_by_repo(session: Session, namespace: str, name: str, shas: list[str]) -> set[str]:
    """Which of `shas` some commit of repository namespace/name (any type) already names."""
    if not shas:
        return set()
    rows = session.scalars(
        select(TreeEntry.file_sha256).distinct()
        .join(Repository, Repository.id == TreeEntry.repo_id)
        .where(Repository.namespace == namespace, Repository.name == name, TreeEntry.file_sha256.in_(shas))
    )
    return set(rows)
