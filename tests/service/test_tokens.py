"""API tokens in the catalog: minted, verified by digest, revoked; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service.auth import TokenInfo
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
def store(hub: Hub) -> CatalogTokenStore:
    return CatalogTokenStore(hub.session)


def test_created_tokens_verify_with_their_rights(store: CatalogTokenStore) -> None:
    writer = store.create("alice", can_write=True)
    reader = store.create("bob", can_write=False)
    assert writer.startswith(TOKEN_PREFIX) and reader.startswith(TOKEN_PREFIX)
    assert writer != reader
    assert store.verify(writer) == TokenInfo(name="alice", can_write=True)
    assert store.verify(reader) == TokenInfo(name="bob", can_write=False)


def test_unknown_and_altered_tokens_are_refused(store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True)
    assert store.verify("") is None
    assert store.verify(TOKEN_PREFIX + "x" * 43) is None
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify(token + " ") is None
    # The digest itself is not a token: a leaked catalog row grants nothing.
    assert store.verify(token_digest(token)) is None


def test_only_the_sha256_digest_is_stored(hub: Hub, store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True)
    with hub.session() as s:
        rows = list(s.scalars(select(Token)))
    assert [row.token_hash for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in repr([(r.name, r.token_hash) for r in rows])


def test_revoked_tokens_stop_working_and_names_stay_taken(store: CatalogTokenStore) -> None:
    token = store.create("alice", can_write=True)
    other = store.create("bob", can_write=True)
    revoked = store.revoke("alice")
    assert revoked.revoked_at is not None and not revoked.active
    assert store.verify(token) is None
    assert store.verify(other) is not None
    with pytest.raises(NotFound, match="alice"):
        store.revoke("alice")
    with pytest.raises(Conflict, match="alice"):
        store.create("alice", can_write=False)
    assert [(r.name, r.active) for r in store.list()] == [("alice", False), ("bob", True)]


def test_names_are_checked(store: CatalogTokenStore) -> None:
    for bad in ("", " padded", "x" * 129, "line\nbreak"):
        with pytest.raises(InvalidInput):
            store.create(bad, can_write=False)
    with pytest.raises(NotFound):
        store.revoke("nobody")


def test_first_start_writes_an_admin_token_readable_by_its_owner_only(tmp_path: Path, store: CatalogTokenStore) -> None:
    path = ensure_admin_token(store, tmp_path / "data")
    assert path == tmp_path / "data" / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert store.verify(token) == TokenInfo(name="admin", can_write=True)
    # Once a token exists, later starts leave everything alone.
    assert ensure_admin_token(store, tmp_path / "data") is None
    assert path.read_text().strip() == token


def test_a_new_admin_token_replaces_a_revoked_one(tmp_path: Path, store: CatalogTokenStore) -> None:
    first = ensure_admin_token(store, tmp_path)
    assert first is not None
    old = first.read_text().strip()
    store.revoke("admin")
    second = ensure_admin_token(store, tmp_path)
    assert second == first
    new = second.read_text().strip()
    assert new != old
    assert store.verify(old) is None
    assert store.verify(new) == TokenInfo(name="admin-2", can_write=True)
