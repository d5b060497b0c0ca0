"""File formats by id, and no per-tensor codec.

- `file_objects.kind` holds the id of the file format that parsed the file (storage/core/formats/
  registry.py: "safetensors", "torchzip", "blob", ...), no longer one of two fixed values: a new format
  is one module, not a migration. Existing rows ("safetensors", "blob") are format ids already.
- `tensors.codec` and `tensors.codec_config` are dropped: every frame names its own codec and config,
  and a tensor's windows may each pick another, so the columns were a lossy summary nothing read.

Downgrade puts the columns back with the summary a v1 reader expects ('plain', {}) and the old check;
it fails if files of a format 0001 did not know are stored.

Revision ID: 0002_formats
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_formats"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("file_objects") as batch:
        batch.drop_constraint(op.f("ck_file_objects_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_file_objects_kind"), "kind <> ''")
    with op.batch_alter_table("tensors") as batch:
        batch.drop_column("codec_config")
        batch.drop_column("codec")


def downgrade() -> None:
    with op.batch_alter_table("tensors") as batch:
        batch.add_column(sa.Column("codec", sa.String(length=32), nullable=False, server_default="plain"))
        batch.add_column(sa.Column("codec_config", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("file_objects") as batch:
        batch.drop_constraint(op.f("ck_file_objects_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_file_objects_kind"), "kind IN ('safetensors', 'blob')")
