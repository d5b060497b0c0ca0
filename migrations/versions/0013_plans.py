"""Read plans cached in process: a per-file plan version, and segments found by offset.

`file_objects.plan_version` counts the re-encodings (rebases) of the tensors a stored file reads
through; a cached read plan is keyed by it, so a re-encode is never read through a stale plan. The
index on (file_sha256, offset) lets a range read load only the segments it touches.

Revision ID: 0013_plans
Revises: 0012_sketches
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013_plans"
down_revision: str | None = "0012_sketches"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("file_objects") as batch:
        batch.add_column(sa.Column("plan_version", sa.Integer(), server_default="0", nullable=False))
    op.create_index(op.f("ix_file_segments_file_sha256_offset"), "file_segments", ["file_sha256", "offset"])


def downgrade() -> None:
    op.drop_index(op.f("ix_file_segments_file_sha256_offset"), table_name="file_segments")
    with op.batch_alter_table("file_objects") as batch:
        batch.drop_column("plan_version")
