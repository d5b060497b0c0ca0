"""Damage records: files and tensors `verify` found damaged, which count as not held until repaired.

Revision ID: 0010_damage
Revises: 0009_mirror
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010_damage"
down_revision: str | None = "0009_mirror"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "damaged_files",
        sa.Column("sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["file_objects.sha256"], name=op.f("fk_damaged_files_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_damaged_files")),
    )
    op.create_table(
        "damaged_tensors",
        sa.Column("tensor_id", sa.CHAR(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tensor_id"], ["tensors.id"], name=op.f("fk_damaged_tensors_tensor_id_tensors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tensor_id", name=op.f("pk_damaged_tensors")),
    )


def downgrade() -> None:
    op.drop_table("damaged_tensors")
    op.drop_table("damaged_files")
