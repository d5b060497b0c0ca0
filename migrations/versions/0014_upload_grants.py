"""Upload grants: which repository a file's bytes were uploaded for (who may commit a file by its hash).

Revision ID: 0014_upload_grants
Revises: 0013_plans
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014_upload_grants"
down_revision: str | None = "0013_plans"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Existing uploads get no grant: files already committed are named by their repositories (which
    # their readers may commit from); a file uploaded but not yet committed is asked for again.
    op.create_table(
        "upload_grants",
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_sha256"], ["file_objects.sha256"], name=op.f("fk_upload_grants_file_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"], ["repositories.id"], name=op.f("fk_upload_grants_repo_id_repositories"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_sha256", "repo_id", name=op.f("pk_upload_grants")),
    )
    op.create_index(op.f("ix_upload_grants_repo_id"), "upload_grants", ["repo_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_upload_grants_repo_id"), table_name="upload_grants")
    op.drop_table("upload_grants")
