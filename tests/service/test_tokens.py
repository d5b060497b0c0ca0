"""API tokens in the catalog: minted, verified by digest, revoked; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.accounts import AccountAdmin
from service.auth import Scope, TokenInfo
from service.tokens import (
    ADMIN_TOKEN_FILE,
    TOKEN_PREFIX,
    CatalogTokenStore,
    ensure_admin_token,
    token_digest,
)
from storage.app.hub import Hub
from storage.catalog.models import Token
from storage.core.errors import Conflict, InvalidInput, NotFound
from storage.settings import load_settings


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    hub = Hub.from_settings(load_settings(data_dir=tmp_path, database_url=database_url), migrate=True)
    yield hub
    hub.engine.dispose()


@pytest.fixture
def accounts(hub: Hub) -> AccountAdmin:
    return AccountAdmin(hub.session)


@pytest.fixture
def store(hub: Hub, accounts: AccountAdmin) -> CatalogTokenStore:
    accounts.create_user("admin", hub_admin=True)
    accounts.create_user("alice")
    accounts.create_user("bob")
    return CatalogTokenStore(hub.session)


def test_created_tokens_verify_with_their_rights(store: CatalogTokenStore) -> None:
    writer = store.create("alice-laptop", can_write=True, user="alice")
    reader = store.create("bob-ci", can_write=False, user="bob")
    assert writer.startswith(TOKEN_PREFIX) and reader.startswith(TOKEN_PREFIX)
    assert writer != reader
    assert store.verify(writer) == TokenInfo(name="alice", can_write=True, token_name="alice-laptop")
    assert store.verify(reader) == TokenInfo(name="bob", can_write=False, token_name="bob-ci")


def test_a_token_carries_its_users_organizations_and_its_scopes(
    store: CatalogTokenStore, accounts: AccountAdmin
) -> None:
    accounts.create_org("acme", admin="alice")
    accounts.create_org("labs")
    accounts.set_member("labs", "alice", "read")
    scopes = (Scope("acme", None, True), Scope("labs", "model", False))
    token = store.create("alice-fg", can_write=False, user="alice", scopes=scopes)
    assert store.verify(token) == TokenInfo(
        name="alice", can_write=True, orgs=(("acme", "admin"), ("labs", "read")), scopes=scopes,
        token_name="alice-fg",
    )
    accounts.set_member("labs", "alice", "write")
    found = store.verify(token)
    assert found is not None and dict(found.orgs) == {"acme": "admin", "labs": "write"}
    accounts.remove_member("labs", "alice")
    found = store.verify(token)
    assert found is not None and found.orgs == (("acme", "admin"),)
    # No scope at all is still fine-grained: it reaches nothing.
    empty = store.verify(store.create("alice-none", can_write=False, user="alice", scopes=()))
    assert empty is not None and empty.scopes == () and not empty.may_write_somewhere


def test_a_disabled_users_tokens_stop_working_until_enabled(store: CatalogTokenStore, accounts: AccountAdmin) -> None:
    token = store.create("bob-ci", can_write=True, user="bob")
    accounts.set_disabled("bob", True)
    assert store.verify(token) is None
    accounts.set_disabled("bob", False)
    assert store.verify(token) is not None


def test_tokens_belong_to_existing_users_and_accounts_share_one_name_space(
    store: CatalogTokenStore, accounts: AccountAdmin
) -> None:
    with pytest.raises(NotFound, match="nobody"):
        store.create("t", can_write=True, user="nobody")
    accounts.create_org("acme")
    with pytest.raises(NotFound, match="acme"):
        store.create("t", can_write=True, user="acme")  # an organization owns no token
    with pytest.raises(Conflict, match="alice"):
        accounts.create_org("alice")
    for bad in ("a/b", "-x", "white space", "alice\n"):
        with pytest.raises(InvalidInput):
            accounts.create_user(bad)


def test_unknown_and_altered_tokens_are_refused(store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True, user="alice")
    assert store.verify("") is None
    assert store.verify(TOKEN_PREFIX + "x" * 43) is None
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify(token + " ") is None
    # The digest itself is not a token: a leaked catalog row grants nothing.
    assert store.verify(token_digest(token)) is None


def test_only_the_sha256_digest_is_stored(hub: Hub, store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True, user="alice")
    with hub.session() as s:
        rows = list(s.scalars(select(Token)))
    assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr([(r.name, r.token_hash) for r in rows])


def test_revoked_tokens_stop_working_and_names_stay_taken(store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True, user="alice")
    other = store.create("bob", can_write=True, user="bob")
    revoked = store.revoke("alice")
    assert revoked.revoked_at is not None and not revoked.active
    assert store.verify(token) is None
    assert store.verify(other) is not None
    with pytest.raises(NotFound, match="alice"):
        store.revoke("alice")
    with pytest.raises(Conflict, match="alice"):
        store.create("alice", can_write=False, user="bob")
    assert [(r.name, r.active) for r in store.list()] == [("alice", False), ("bob", True)]


def test_names_are_checked(store: CatalogTokenStore) -> None:
    for bad in ("", " padded", "x" * 129, "line\nbreak"):
        with pytest.raises(InvalidInput):
            store.create(bad, can_write=False, user="alice")
    with pytest.raises(NotFound):
        store.revoke("nobody")


def test_first_start_creates_the_admin_user_and_writes_its_token_readable_by_its_owner_only(
    tmp_path: Path, hub: Hub
) -> None:
    store = CatalogTokenStore(hub.session)
    path = ensure_admin_token(store, tmp_path / "data")
    assert path == tmp_path / "data" / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert store.verify(token) == TokenInfo(name="admin", can_write=True, hub_admin=True, token_name="admin")
    assert [(a.name, a.kind, a.hub_admin) for a in AccountAdmin(hub.session).accounts()] == [("admin", "user", True)]
    # Once a token exists, later starts leave everything alone.
    assert ensure_admin_token(store, tmp_path / "data") is None
    assert path.read_text().strip() == token


def test_a_new_admin_token_replaces_a_revoked_one(tmp_path: Path, hub: Hub) -> None:
    store = CatalogTokenStore(hub.session)
    first = ensure_admin_token(store, tmp_path)
    assert first is not None
    old = first.read_text().strip()
    store.revoke("admin")
    second = ensure_admin_token(store, tmp_path)
    assert second == first
    new = second.read_text().strip()
    assert new != old
    assert store.verify(old) is None
    assert store.verify(new) == TokenInfo(name="admin", can_write=True, hub_admin=True, token_name="admin-2")
