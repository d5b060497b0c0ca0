"""Redirects from the names repositories were moved away from (move_repo), as the Hub keeps them.

Revision ID: 0006_redirects
Revises: 0005_refs
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_redirects"
down_revision: str | None = "0005_refs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "repo_redirects",
        sa.Column("repo_type", sa.String(length=16), nullable=False),
        sa.Column("namespace", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("repo_type IN ('model', 'dataset')", name=op.f("ck_repo_redirects_repo_type")),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"],
            name=op.f("fk_repo_redirects_repository_id_repositories"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_type", "namespace", "name", name=op.f("pk_repo_redirects")),
    )
    op.create_index(op.f("ix_repo_redirects_repository_id"), "repo_redirects", ["repository_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_repo_redirects_repository_id"), table_name="repo_redirects")
    op.drop_table("repo_redirects")
