"""Uploads: block checksums of staged files, and when an upload last relied on a file being held.

- staging_sums: the CRC-32 of every 1 MiB block, recorded as the upload streams in, so a read served
  from staging (before ingest) checks every byte it sends (storage/core/blocksums.py).
- claimed_at: an LFS batch (or preupload) that answers "held" lets the client skip the upload and
  commit later; GC counted the grace period from the file's creation and could delete it in between.

Revision ID: 0003_uploads
Revises: 0002_formats
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_uploads"
down_revision: str | None = "0002_formats"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("file_objects") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("staging_sums", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("file_objects") as batch:
        batch.drop_column("staging_sums")
        batch.drop_column("claimed_at")
