"""Xet uploads: uploaded xorbs, where their chunks are held, the global dedup index, file hashes.

Revision ID: 0004_xet
Revises: 0003_uploads
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004_xet"
down_revision: str | None = "0003_uploads"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "xet_xorbs",
        sa.Column("hash", sa.CHAR(length=64), nullable=False),
        sa.Column("num_chunks", sa.Integer(), nullable=False),
        sa.Column("unpacked_bytes", sa.BigInteger(), nullable=False),
        sa.Column("chunk_table", sa.LargeBinary(), nullable=False),
        sa.Column("raw_key", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("num_chunks > 0 AND unpacked_bytes >= 0", name=op.f("ck_xet_xorbs_sizes_valid")),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_xet_xorbs")),
    )
    op.create_table(
        "xet_xorb_spans",
        sa.Column("xorb_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("chunk_start", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("chunk_end", sa.Integer(), nullable=False),
        sa.Column("file_offset", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "chunk_start >= 0 AND chunk_end > chunk_start AND file_offset >= 0",
            name=op.f("ck_xet_xorb_spans_extent_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["file_sha256"],
            ["file_objects.sha256"],
            name=op.f("fk_xet_xorb_spans_file_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["xorb_hash"], ["xet_xorbs.hash"], name=op.f("fk_xet_xorb_spans_xorb_hash_xet_xorbs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("xorb_hash", "chunk_start", "file_sha256", name=op.f("pk_xet_xorb_spans")),
    )
    op.create_index(op.f("ix_xet_xorb_spans_file_sha256"), "xet_xorb_spans", ["file_sha256"], unique=False)
    op.create_table(
        "xet_dedup_chunks",
        sa.Column("chunk_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("xorb_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["xorb_hash"], ["xet_xorbs.hash"], name=op.f("fk_xet_dedup_chunks_xorb_hash_xet_xorbs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("chunk_hash", name=op.f("pk_xet_dedup_chunks")),
    )
    op.create_index(op.f("ix_xet_dedup_chunks_xorb_hash"), "xet_dedup_chunks", ["xorb_hash"], unique=False)
    op.create_table(
        "xet_files",
        sa.Column("file_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["file_objects.sha256"], name=op.f("fk_xet_files_sha256_file_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("file_hash", name=op.f("pk_xet_files")),
    )
    op.create_index(op.f("ix_xet_files_sha256"), "xet_files", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_xet_files_sha256"), table_name="xet_files")
    op.drop_table("xet_files")
    op.drop_index(op.f("ix_xet_dedup_chunks_xorb_hash"), table_name="xet_dedup_chunks")
    op.drop_table("xet_dedup_chunks")
    op.drop_index(op.f("ix_xet_xorb_spans_file_sha256"), table_name="xet_xorb_spans")
    op.drop_table("xet_xorb_spans")
    op.drop_table("xet_xorbs")
