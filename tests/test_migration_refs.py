"""0005_refs (repository types and tags) on a catalog that already holds repositories: they become
models, their refs branches, and a repository with no branch is given none."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from storage.catalog.db import downgrade, make_engine, upgrade


def test_existing_repositories_become_models_and_refs_branches(database_url: str) -> None:
    upgrade(database_url, "0001_initial")
    engine = make_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO repositories (id, namespace, name, private, created_at) VALUES "
                           "(1, 'org', 'pushed', false, :t), (2, 'org', 'empty', false, :t)"), {"t": now})
            c.execute(text("INSERT INTO commits (oid, repo_id, parent_oid, message, author, created_at) "
                           "VALUES (:oid, 1, NULL, 'first', NULL, :t)"), {"oid": "a" * 40, "t": now})
            c.execute(text("INSERT INTO refs (repo_id, name, commit_oid) VALUES (1, 'main', :oid)"), {"oid": "a" * 40})
        upgrade(database_url)
        with engine.connect() as c:
            assert c.execute(text("SELECT name, repo_type FROM repositories ORDER BY id")).all() == [
                ("pushed", "model"), ("empty", "model")
            ]
            assert c.execute(text("SELECT repo_id, name, kind, message FROM refs")).all() == [
                (1, "main", "branch", None)
            ]
            # A dataset may now take a model's name.
            c.execute(text("INSERT INTO repositories (id, repo_type, namespace, name, private, created_at) "
                           "VALUES (3, 'dataset', 'org', 'pushed', false, :t)"), {"t": now})
            c.rollback()
        downgrade(database_url, "0001_initial")
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM refs")).scalar() == 1
    finally:
        engine.dispose()
