"""0007_tenancy on a catalog that already holds tokens and repositories: every token keeps working with
the rights it had (it now belongs to the hub administrator "admin"), every namespace becomes an
organization "admin" administers, so nothing stored becomes unreachable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import text

from service.auth import TokenInfo
from service.policy import Policy
from service.tokens import CatalogTokenStore
from storage.catalog.db import downgrade, make_engine, session_factory, session_scope, upgrade


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_existing_tokens_and_namespaces_map_to_the_admin_user(database_url: str) -> None:
    upgrade(database_url, "0005_refs")
    engine = make_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO repositories (id, repo_type, namespace, name, private, created_at) VALUES "
                           "(1, 'model', 'alice', 'secret', true, :t), (2, 'dataset', 'lab', 'data', false, :t), "
                           "(3, 'model', 'admin', 'own', false, :t)"), {"t": now})
            c.execute(text("INSERT INTO tokens (name, token_hash, can_write, created_at, revoked_at) VALUES "
                           "('alice', :w, true, :t, NULL), ('ci', :r, false, :t, NULL), "
                           "('old', :o, true, :t, :t)"),
                      {"w": _digest("dh_write"), "r": _digest("dh_read"), "o": _digest("dh_old"), "t": now})
        upgrade(database_url)
        with engine.connect() as c:
            assert c.execute(text("SELECT name, kind, hub_admin FROM accounts ORDER BY name")).all() == [
                ("admin", "user", True), ("alice", "org", False), ("lab", "org", False)
            ]
            assert c.execute(text(
                "SELECT o.name, u.name, m.role FROM memberships m JOIN accounts o ON o.id = m.org_id "
                "JOIN accounts u ON u.id = m.user_id ORDER BY o.name"
            )).all() == [("alice", "admin", "admin"), ("lab", "admin", "admin")]
            assert c.execute(text("SELECT count(*) FROM tokens t JOIN accounts a ON a.id = t.user_id "
                                  "WHERE a.name = 'admin'")).scalar() == 3
        store = CatalogTokenStore(lambda: session_scope(session_factory(engine)))
        writer, reader = store.verify("dh_write"), store.verify("dh_read")
        orgs = (("alice", "admin"), ("lab", "admin"))
        assert writer == TokenInfo("admin", True, hub_admin=True, orgs=orgs, token_name="alice")
        assert reader == TokenInfo("admin", False, hub_admin=True, orgs=orgs, token_name="ci")
        assert store.verify("dh_old") is None  # revoked stays revoked
        # Reachable as before: the write token writes every repository, the read token reads the private one.
        policy = Policy()
        assert policy.may_write(writer, "alice/secret") and policy.may_write(writer, "lab/data")
        assert policy.may_read(reader, "alice/secret", private=True)
        assert not policy.may_write(reader, "alice/secret")
        assert not policy.may_read(None, "alice/secret", private=True)

        downgrade(database_url, "0005_refs")
        with engine.connect() as c:
            assert c.execute(text("SELECT name FROM tokens ORDER BY name")).scalars().all() == ["alice", "ci", "old"]
        upgrade(database_url)
    finally:
        engine.dispose()


def test_an_empty_catalog_gets_no_account(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM accounts")).scalar() == 0
    finally:
        engine.dispose()
