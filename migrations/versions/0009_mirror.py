"""The pull-through mirror: revisions looked up at the upstream, and fetch claims (single-flight).

Revision ID: 0009_mirror
Revises: 0008_git
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_mirror"
down_revision: str | None = "0008_git"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "mirror_revisions",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(length=255), nullable=False),
        sa.Column("commit_oid", sa.CHAR(length=40), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"], ["repositories.id"], name=op.f("fk_mirror_revisions_repo_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "revision", name=op.f("pk_mirror_revisions")),
    )
    op.create_table(
        "mirror_claims",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.CHAR(length=64), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mirror_claims")),
    )


def downgrade() -> None:
    op.drop_table("mirror_claims")
    op.drop_table("mirror_revisions")
