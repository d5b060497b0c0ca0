"""Users and organizations, for the admin CLI and tests: thin calls into the catalog in one session each.

Names follow the Hub's rules for namespaces (storage/core/names.py), so a user's or an organization's
name is always a valid namespace.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from storage.catalog import accounts as catalog_accounts
from storage.catalog.accounts import AccountRecord
from storage.catalog.models import AccountKind, Role
from storage.core.errors import InvalidInput
from storage.core.names import split_repo_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SessionScope = Callable[[], AbstractContextManager["Session"]]
ROLES = tuple(role.value for role in Role)


def check_account_name(name: str) -> str:
    """A valid namespace (the checks of a repository id's first half), as users and organizations own one."""
    namespace, _ = split_repo_id(f"{name}/x")
    if namespace != name:
        raise InvalidInput(detail=f"account name {name!r} is not a valid namespace")
    return name


class AccountAdmin:
    def __init__(self, session: SessionScope) -> None:
        self._session = session

    def create_user(self, name: str, *, hub_admin: bool = False) -> AccountRecord:
        with self._session() as s:
            return catalog_accounts.create_account(s, check_account_name(name), AccountKind.USER, hub_admin=hub_admin)

    def create_org(self, name: str, *, admin: str | None = None) -> AccountRecord:
        """A new organization; `admin`, when given, becomes its first member with the admin role."""
        with self._session() as s:
            record = catalog_accounts.create_account(s, check_account_name(name), AccountKind.ORG)
            if admin is not None:
                catalog_accounts.set_member(s, name, admin, Role.ADMIN)
        return record

    def accounts(self, kind: str | None = None) -> list[AccountRecord]:
        with self._session() as s:
            return catalog_accounts.list_accounts(s, kind)

    def set_disabled(self, name: str, disabled: bool) -> AccountRecord:
        with self._session() as s:
            return catalog_accounts.set_disabled(s, name, disabled)

    def set_quota(self, name: str, quota_bytes: int | None) -> AccountRecord:
        with self._session() as s:
            return catalog_accounts.set_quota(s, name, quota_bytes)

    def set_member(self, org: str, user: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidInput(detail=f"role {role!r}: one of {', '.join(ROLES)}")
        with self._session() as s:
            catalog_accounts.set_member(s, org, user, role)

    def remove_member(self, org: str, user: str) -> None:
        with self._session() as s:
            catalog_accounts.remove_member(s, org, user)

    def members(self, org: str) -> list[tuple[str, str]]:
        with self._session() as s:
            return catalog_accounts.members(s, org)
