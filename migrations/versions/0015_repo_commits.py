"""A commit belongs to its repository: commits are keyed by (repo_id, oid), not by the git id alone.

Commit ids are git ids, so one commit can be in many repositories (a clone of A pushed into B, two
mirrors of one upstream commit). Each repository now holds its own row; tree entries and aliases gain
the repository's id (copied from their commit), and refs, tree entries, aliases and parents reference
a commit by (repo_id, oid), so each names a commit of its own repository. Every row is kept.

Downgrading is refused while some commit id is held by two repositories: the old key cannot hold both.

Revision ID: 0015_repo_commits
Revises: 0014_upload_grants
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015_repo_commits"
down_revision: str | None = "0014_upload_grants"
branch_labels: str | None = None
depends_on: str | None = None

# Tables naming a commit by its id, with the column that names it and what deleting the commit does.
_CHILDREN = (("refs", "commit_oid", None), ("tree_entries", "commit_oid", "CASCADE"),
             ("commit_aliases", "oid", "CASCADE"))


def _fill_repo_id(table: str, column: str) -> None:
    op.execute(f"UPDATE {table} SET repo_id = (SELECT c.repo_id FROM commits c WHERE c.oid = {table}.{column})")


def upgrade() -> None:
    for table, column, _ in _CHILDREN:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_{column}_commits", type_="foreignkey")
            if table != "refs":
                batch.add_column(sa.Column("repo_id", sa.Integer(), nullable=True))
        if table != "refs":
            _fill_repo_id(table, column)
    with op.batch_alter_table("tree_entries") as batch:
        batch.alter_column("repo_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("pk_tree_entries", type_="primary")
        batch.create_primary_key("pk_tree_entries", ["repo_id", "commit_oid", "path"])
    with op.batch_alter_table("commit_aliases") as batch:
        batch.drop_index("ix_commit_aliases_oid")
        batch.alter_column("repo_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("pk_commit_aliases", type_="primary")
        batch.create_primary_key("pk_commit_aliases", ["repo_id", "old_oid"])
        batch.create_index("ix_commit_aliases_repo_id_oid", ["repo_id", "oid"])
    with op.batch_alter_table("commits") as batch:
        batch.drop_constraint("fk_commits_parent_oid_commits", type_="foreignkey")
        batch.drop_index("ix_commits_repo_id")  # the key's first column now
        batch.drop_constraint("pk_commits", type_="primary")
        batch.create_primary_key("pk_commits", ["repo_id", "oid"])
    with op.batch_alter_table("commits") as batch:
        batch.create_foreign_key("fk_commits_repo_id_commits", "commits", ["repo_id", "parent_oid"],
                                 ["repo_id", "oid"])
    for table, column, ondelete in _CHILDREN:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"fk_{table}_repo_id_commits", "commits", ["repo_id", column],
                                     ["repo_id", "oid"], ondelete=ondelete)


def downgrade() -> None:
    shared = op.get_bind().execute(
        sa.text("SELECT oid FROM commits GROUP BY oid HAVING count(*) > 1 ORDER BY oid")
    ).scalars().first()
    if shared is not None:
        raise RuntimeError(f"commit {shared} is held by more than one repository: before 0015 a commit id "
                           "could be in one only (delete the other copies to downgrade)")
    for table, _, _ in _CHILDREN:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_repo_id_commits", type_="foreignkey")
    with op.batch_alter_table("commits") as batch:
        batch.drop_constraint("fk_commits_repo_id_commits", type_="foreignkey")
    with op.batch_alter_table("commits") as batch:
        batch.drop_constraint("pk_commits", type_="primary")
        batch.create_primary_key("pk_commits", ["oid"])
        batch.create_index("ix_commits_repo_id", ["repo_id"])
    with op.batch_alter_table("commits") as batch:
        batch.create_foreign_key("fk_commits_parent_oid_commits", "commits", ["parent_oid"], ["oid"])
    with op.batch_alter_table("commit_aliases") as batch:
        batch.drop_index("ix_commit_aliases_repo_id_oid")
        batch.drop_constraint("pk_commit_aliases", type_="primary")
        batch.create_primary_key("pk_commit_aliases", ["old_oid"])
        batch.drop_column("repo_id")
        batch.create_index("ix_commit_aliases_oid", ["oid"])
    with op.batch_alter_table("tree_entries") as batch:
        batch.drop_constraint("pk_tree_entries", type_="primary")
        batch.create_primary_key("pk_tree_entries", ["commit_oid", "path"])
        batch.drop_column("repo_id")
    for table, column, ondelete in _CHILDREN:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"fk_{table}_{column}_commits", "commits", [column], ["oid"], ondelete=ondelete)
