"""0015_repo_commits on a 0014 catalog holding two repositories' histories: every commit, ref, tree entry
and alias is kept, each under its own repository; afterwards one commit id can be held by two
repositories; the downgrade is refused while it is, and restores the old key once it is not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from storage.catalog.db import downgrade, make_engine, upgrade

LINE = "deltahub <d@x> 1 +0000"


def test_every_row_is_kept_under_its_repository(database_url: str) -> None:
    upgrade(database_url, "0014_upload_grants")
    engine = make_engine(database_url)
    now = datetime(2026, 1, 2, tzinfo=UTC).replace(tzinfo=None)
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO repositories (id, repo_type, namespace, name, private, created_at) VALUES "
                              "(1, 'model', 'org', 'one', false, :t), (2, 'model', 'org', 'two', false, :t)"),
                         {"t": now})
            conn.execute(text("INSERT INTO file_objects (sha256, size, kind, state, created_at, plan_version) "
                              "VALUES (:s, 5, 'blob', 'stored', :t, 0)"), {"s": "f" * 64, "t": now})
            conn.execute(text("INSERT INTO commits (oid, repo_id, parent_oid, message, author, created_at, git_author, "
                              "git_committer) VALUES (:a, 1, NULL, 'm', NULL, :t, :l, :l), "
                              "(:b, 1, :a, 'm', NULL, :t, :l, :l), (:c, 2, NULL, 'm', NULL, :t, :l, :l)"),
                         {"a": a, "b": b, "c": c, "t": now, "l": LINE})
            conn.execute(text("INSERT INTO tree_entries (commit_oid, path, file_sha256, lfs, git_oid) VALUES "
                              "(:a, 'x', :f, true, :g), (:b, 'x', :f, true, :g), (:b, 'y', :f, false, :g), "
                              "(:c, 'x', :f, true, :g)"), {"a": a, "b": b, "c": c, "f": "f" * 64, "g": "0" * 40})
            conn.execute(text("INSERT INTO refs (repo_id, name, commit_oid, kind) VALUES (1, 'main', :b, 'branch'), "
                              "(1, 'v1', :a, 'tag'), (2, 'main', :c, 'branch')"), {"a": a, "b": b, "c": c})
            conn.execute(text("INSERT INTO commit_aliases (old_oid, oid) VALUES (:o, :b)"), {"o": "9" * 40, "b": b})
        upgrade(database_url)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT repo_id, oid, parent_oid FROM commits ORDER BY oid")).all() == [
                (1, a, None), (1, b, a), (2, c, None)]
            assert conn.execute(text("SELECT repo_id, commit_oid, path, lfs FROM tree_entries "
                                     "ORDER BY commit_oid, path")).all() == [
                (1, a, "x", True), (1, b, "x", True), (1, b, "y", False), (2, c, "x", True)]
            assert conn.execute(text("SELECT repo_id, name, commit_oid FROM refs ORDER BY repo_id, name")).all() == [
                (1, "main", b), (1, "v1", a), (2, "main", c)]
            assert conn.execute(text("SELECT repo_id, old_oid, oid FROM commit_aliases")).all() == [(1, "9" * 40, b)]
            # Repository 2 now holds repository 1's commit too (a fork pushed with git).
            conn.execute(text("INSERT INTO commits (oid, repo_id, parent_oid, message, author, created_at, "
                              "git_author, git_committer) VALUES (:a, 2, NULL, 'm', NULL, :t, :l, :l)"),
                         {"a": a, "t": now, "l": LINE})
            conn.execute(text("INSERT INTO tree_entries (repo_id, commit_oid, path, file_sha256, lfs, git_oid) "
                              "VALUES (2, :a, 'x', :f, true, :g)"), {"a": a, "f": "f" * 64, "g": "0" * 40})
        with pytest.raises(RuntimeError, match="held by more than one repository"):
            downgrade(database_url, "0014_upload_grants")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM tree_entries WHERE repo_id = 2 AND commit_oid = :a"), {"a": a})
            conn.execute(text("DELETE FROM commits WHERE repo_id = 2 AND oid = :a"), {"a": a})
        downgrade(database_url, "0014_upload_grants")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tree_entries")).scalar() == 4
            assert conn.execute(text("SELECT oid FROM commit_aliases")).scalar() == b
    finally:
        engine.dispose()
