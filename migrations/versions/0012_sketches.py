"""Model sketches for finding a new file's nearest relatives, and the per-family ingest lock.

Revision ID: 0012_sketches
Revises: 0011_counters
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012_sketches"
down_revision: str | None = "0011_counters"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "file_sketches",
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("layout", sa.CHAR(length=64), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["file_objects.sha256"], name=op.f("fk_file_sketches_file_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_sha256", name=op.f("pk_file_sketches")),
    )
    op.create_index(op.f("ix_file_sketches_layout"), "file_sketches", ["layout"], unique=False)
    op.create_table(
        "family_ingests",
        sa.Column("fingerprint", sa.CHAR(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_family_ingests")),
    )


def downgrade() -> None:
    op.drop_table("family_ingests")
    op.drop_index(op.f("ix_file_sketches_layout"), table_name="file_sketches")
    op.drop_table("file_sketches")
