"""0008_git on a 0005 catalog holding commits: ids become git ids, old ids stay resolvable as aliases,
and the ids are what git computes from the rebuilt objects (checked with dulwich)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from dulwich.objects import Blob, Commit, Tree
from sqlalchemy import text

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from storage.catalog.db import downgrade, make_engine, upgrade
from storage.core.gitobjects import lfs_pointer


def test_commits_are_rewritten_to_git_ids_with_aliases(database_url: str) -> None:
    upgrade(database_url, "0005_refs")
    engine = make_engine(database_url)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).replace(tzinfo=None)
    attrs = hashlib.sha256(MODEL_GITATTRIBUTES).hexdigest()
    weights = "b" * 64
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO repositories (id, repo_type, namespace, name, private, created_at) "
                           "VALUES (1, 'model', 'org', 'm', false, :t)"), {"t": now})
            for sha, size in ((attrs, len(MODEL_GITATTRIBUTES)), (weights, 5000)):
                c.execute(text("INSERT INTO file_objects (sha256, size, kind, state, created_at) "
                               "VALUES (:s, :n, 'blob', 'stored', :t)"), {"s": sha, "n": size, "t": now})
            c.execute(text("INSERT INTO commits (oid, repo_id, parent_oid, message, author, created_at) VALUES "
                           "(:a, 1, NULL, 'initial commit', NULL, :t), (:b, 1, :a, 'add weights', 'ann', :t)"),
                      {"a": "a" * 40, "b": "c" * 40, "t": now})
            c.execute(text("INSERT INTO tree_entries (commit_oid, path, file_sha256) VALUES "
                           "(:a, '.gitattributes', :g), (:b, '.gitattributes', :g), (:b, 'w/model.bin', :w)"),
                      {"a": "a" * 40, "b": "c" * 40, "g": attrs, "w": weights})
            c.execute(text("INSERT INTO refs (repo_id, name, commit_oid, kind) VALUES (1, 'main', :b, 'branch')"),
                      {"b": "c" * 40})
        upgrade(database_url, "0008_git")
        with engine.connect() as c:
            head = c.execute(text("SELECT commit_oid FROM refs")).scalar_one()
            aliases = dict(c.execute(text("SELECT old_oid, oid FROM commit_aliases")).all())
            assert aliases["c" * 40] == head
            row = c.execute(text("SELECT parent_oid, git_author, git_committer FROM commits WHERE oid = :o"),
                            {"o": head}).one()
            assert row[0] == aliases["a" * 40]
            entries = c.execute(text("SELECT path, lfs, git_oid FROM tree_entries WHERE commit_oid = :o "
                                     "ORDER BY path"), {"o": head}).all()
        # Rebuild with dulwich: the stored id is git's id of these objects.
        gitattributes = Blob.from_string(MODEL_GITATTRIBUTES)
        pointer = Blob.from_string(lfs_pointer(weights, 5000))
        assert [(p, bool(lfs), oid) for p, lfs, oid in entries] == [
            (".gitattributes", False, gitattributes.id.decode()), ("w/model.bin", True, pointer.id.decode())
        ]
        folder = Tree()
        folder.add(b"model.bin", 0o100644, pointer.id)
        root = Tree()
        root.add(b".gitattributes", 0o100644, gitattributes.id)
        root.add(b"w", 0o040000, folder.id)
        first = Tree()
        first.add(b".gitattributes", 0o100644, gitattributes.id)

        def commit(tree: Tree, parents: list[bytes], message: bytes, author: bytes) -> Commit:
            out = Commit()
            out.tree, out.parents, out.message = tree.id, parents, message
            out.author = author + b" <" + author + b"@users.noreply.deltahub>"
            out.committer = b"deltahub <repo-1@commits.deltahub>"
            out.author_time = out.commit_time = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
            out.author_timezone = out.commit_timezone = 0
            return out

        initial = commit(first, [], b"initial commit", b"deltahub")
        assert initial.id.decode() == aliases["a" * 40]
        assert commit(root, [initial.id], b"add weights", b"ann").id.decode() == head
        assert row[1] == f"ann <ann@users.noreply.deltahub> {initial.author_time} +0000"
        downgrade(database_url, "0005_refs")
        with engine.connect() as c:
            assert c.execute(text("SELECT commit_oid FROM refs")).scalar_one() == head
    finally:
        engine.dispose()
