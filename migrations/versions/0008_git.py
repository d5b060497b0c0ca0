"""Commit ids become git ids; tree entries say how git holds each file; old ids stay as aliases.

Every existing tree entry becomes an LFS pointer (the migration cannot read file bytes, and listings
already described every file as LFS), except a `.gitattributes` holding the Hub's text the initial
commit writes, which is a blob of its bytes. Each commit gets author and committer lines from its
author and time, and its id is recomputed, parents first; `commit_aliases` maps each old id to its new
one so a revision pinned by an old id keeps resolving.

Downgrading drops the columns and the aliases but keeps the git ids (they are 40-hex ids like any).

Revision ID: 0008_git
Revises: 0007_tenancy
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from storage.app.gitattributes import DATASET_GITATTRIBUTES, MODEL_GITATTRIBUTES
from storage.core.gitobjects import GitBlob, blob_id, commit_id, identity, tree_objects

revision: str = "0008_git"
down_revision: str | None = "0007_tenancy"
branch_labels: str | None = None
depends_on: str | None = None

_KNOWN = {hashlib.sha256(text).hexdigest(): blob_id(text) for text in (MODEL_GITATTRIBUTES, DATASET_GITATTRIBUTES)}


def upgrade() -> None:
    with op.batch_alter_table("commits") as batch:
        batch.add_column(sa.Column("git_author", sa.Text(), nullable=True))
        batch.add_column(sa.Column("git_committer", sa.Text(), nullable=True))
    with op.batch_alter_table("tree_entries") as batch:
        batch.add_column(sa.Column("lfs", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("git_oid", sa.CHAR(length=40), nullable=True))
    op.create_table(
        "commit_aliases",
        sa.Column("old_oid", sa.CHAR(length=40), nullable=False),
        sa.Column("oid", sa.CHAR(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["oid"], ["commits.oid"], name=op.f("fk_commit_aliases_oid_commits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("old_oid", name=op.f("pk_commit_aliases")),
    )
    op.create_index(op.f("ix_commit_aliases_oid"), "commit_aliases", ["oid"], unique=False)
    _rewrite(op.get_bind())
    with op.batch_alter_table("commits") as batch:
        batch.alter_column("git_author", existing_type=sa.Text(), nullable=False)
        batch.alter_column("git_committer", existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table("tree_entries") as batch:
        batch.alter_column("git_oid", existing_type=sa.CHAR(length=40), nullable=False)
        batch.alter_column("lfs", existing_type=sa.Boolean(), server_default=None)


def _rewrite(c: sa.Connection) -> None:
    rows = c.execute(
        sa.text("SELECT oid, repo_id, parent_oid, message, author, created_at FROM commits")
    ).all()
    by_oid = {row[0]: row for row in rows}
    renamed: dict[str, str] = {}

    def rewrite(oid: str) -> str:
        # Parents first, without recursion (histories are long): walk up to a rewritten ancestor.
        chain = [oid]
        while (parent := by_oid[chain[-1]][2]) is not None and parent not in renamed:
            chain.append(parent)
        for old in reversed(chain):
            renamed[old] = _commit(c, by_oid[old], renamed)
        return renamed[oid]

    for oid in by_oid:
        if oid not in renamed:
            rewrite(oid)
    for old, new in renamed.items():
        ids = {"new": new, "old": old}
        c.execute(sa.text("UPDATE tree_entries SET commit_oid = :new WHERE commit_oid = :old"), ids)
        c.execute(sa.text("UPDATE refs SET commit_oid = :new WHERE commit_oid = :old"), ids)
        c.execute(sa.text("UPDATE commits SET parent_oid = :new WHERE parent_oid = :old"), ids)
    for old, new in renamed.items():
        c.execute(sa.text("DELETE FROM commits WHERE oid = :old"), {"old": old})
        c.execute(sa.text("INSERT INTO commit_aliases (old_oid, oid) VALUES (:old, :new)"), {"old": old, "new": new})


def _commit(c: sa.Connection, row: sa.Row[tuple[str, int, str | None, str, str | None, datetime]],
            renamed: dict[str, str]) -> str:
    old, repo_id, parent, message, author, created = row
    if isinstance(created, str):  # SQLite hands back text
        created = datetime.fromisoformat(created)
    when = created.replace(tzinfo=created.tzinfo or UTC)
    entries = c.execute(
        sa.text(
            "SELECT t.path, t.file_sha256, f.size FROM tree_entries t "
            "JOIN file_objects f ON f.sha256 = t.file_sha256 WHERE t.commit_oid = :oid"
        ),
        {"oid": old},
    ).all()
    blobs: dict[str, GitBlob] = {}
    for path, sha, size in entries:
        known = _KNOWN.get(sha) if path == ".gitattributes" else None
        blobs[path] = GitBlob(False, known) if known else GitBlob.pointer(sha, size)
        c.execute(
            sa.text("UPDATE tree_entries SET lfs = :lfs, git_oid = :git WHERE commit_oid = :oid AND path = :path"),
            {"lfs": blobs[path].lfs, "git": blobs[path].oid, "oid": old, "path": path},
        )
    git_author = identity(author or "deltahub", when)
    git_committer = identity("deltahub", when, f"repo-{repo_id}@commits.deltahub")
    tree, _, _ = tree_objects({path: blob.oid for path, blob in blobs.items()})
    new_parent = renamed[parent] if parent else None
    new = commit_id(tree, new_parent, git_author, git_committer, message)
    c.execute(
        sa.text(
            "INSERT INTO commits (oid, repo_id, parent_oid, message, author, created_at, git_author, git_committer) "
            "VALUES (:oid, :repo, :parent, :message, :author, :created, :ga, :gc)"
        ),
        {"oid": new, "repo": repo_id, "parent": new_parent, "message": message, "author": author,
         "created": row[5], "ga": git_author, "gc": git_committer},
    )
    return new


def downgrade() -> None:
    op.drop_index(op.f("ix_commit_aliases_oid"), table_name="commit_aliases")
    op.drop_table("commit_aliases")
    with op.batch_alter_table("tree_entries") as batch:
        batch.drop_column("git_oid")
        batch.drop_column("lfs")
    with op.batch_alter_table("commits") as batch:
        batch.drop_column("git_committer")
        batch.drop_column("git_author")
