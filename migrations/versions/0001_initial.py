"""The initial catalog: repositories, commits, files, tensors, frames, store objects, jobs, tokens.

Every table and constraint is spelled out here (not ``metadata.create_all``) so this revision keeps
creating the same schema while the models move on. Constraint names follow the models'
``NAMING_CONVENTION``; later revisions alter them by these names.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Referenced tables first: families, repositories, store_objects, tensors, tokens have no parents.
    op.create_table(
        "families",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.CHAR(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("root_sha256", sa.CHAR(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_families")),
    )
    op.create_index(op.f("ix_families_fingerprint"), "families", ["fingerprint"], unique=False)

    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("namespace", "name", name=op.f("uq_repositories_namespace_name")),
    )

    op.create_table(
        "store_objects",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('pack', 'frame', 'staging')", name=op.f("ck_store_objects_kind")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_objects")),
    )

    op.create_table(
        "tensors",
        sa.Column("id", sa.CHAR(length=64), nullable=False),
        sa.Column("dtype", sa.String(length=16), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("codec", sa.String(length=32), nullable=False),
        sa.Column("codec_config", sa.JSON(), nullable=False),
        sa.Column("base_tensor_id", sa.CHAR(length=64), nullable=True),
        sa.Column("chain_depth", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("chain_depth >= 0", name=op.f("ck_tensors_chain_depth_nonnegative")),
        sa.CheckConstraint("nbytes >= 0", name=op.f("ck_tensors_nbytes_nonnegative")),
        sa.ForeignKeyConstraint(
            ["base_tensor_id"],
            ["tensors.id"],
            name=op.f("fk_tensors_base_tensor_id_tensors"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tensors")),
    )
    op.create_index(op.f("ix_tensors_base_tensor_id"), "tensors", ["base_tensor_id"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.CHAR(length=64), nullable=False),
        sa.Column("can_write", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )

    op.create_table(
        "commits",
        sa.Column("oid", sa.CHAR(length=40), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("parent_oid", sa.CHAR(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parent_oid"], ["commits.oid"], name=op.f("fk_commits_parent_oid_commits")),
        sa.ForeignKeyConstraint(
            ["repo_id"], ["repositories.id"], name=op.f("fk_commits_repo_id_repositories"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("oid", name=op.f("pk_commits")),
    )
    op.create_index(op.f("ix_commits_repo_id"), "commits", ["repo_id"], unique=False)

    op.create_table(
        "file_objects",
        sa.Column("sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("staging_key", sa.String(length=512), nullable=True),
        sa.Column("family_id", sa.Integer(), nullable=True),
        sa.Column("base_sha256", sa.CHAR(length=64), nullable=True),
        sa.Column("declared_base", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.CHAR(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('safetensors', 'blob')", name=op.f("ck_file_objects_kind")),
        sa.CheckConstraint("state IN ('staged', 'stored', 'failed')", name=op.f("ck_file_objects_state")),
        sa.CheckConstraint("size >= 0", name=op.f("ck_file_objects_size_nonnegative")),
        sa.ForeignKeyConstraint(
            ["base_sha256"],
            ["file_objects.sha256"],
            name=op.f("fk_file_objects_base_sha256_file_objects"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["families.id"],
            name=op.f("fk_file_objects_family_id_families"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_file_objects")),
    )
    op.create_index(op.f("ix_file_objects_family_id"), "file_objects", ["family_id"], unique=False)
    op.create_index(op.f("ix_file_objects_fingerprint"), "file_objects", ["fingerprint"], unique=False)

    op.create_table(
        "frames",
        sa.Column("tensor_id", sa.CHAR(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("raw_offset", sa.BigInteger(), nullable=False),
        sa.Column("raw_length", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("object_offset", sa.BigInteger(), nullable=False),
        sa.Column("object_length", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "raw_offset >= 0 AND raw_length >= 0 AND object_offset >= 0 AND object_length >= 0",
            name=op.f("ck_frames_extent_nonnegative"),
        ),
        sa.ForeignKeyConstraint(
            ["object_key"],
            ["store_objects.key"],
            name=op.f("fk_frames_object_key_store_objects"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tensor_id"], ["tensors.id"], name=op.f("fk_frames_tensor_id_tensors"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tensor_id", "seq", name=op.f("pk_frames")),
    )
    op.create_index(op.f("ix_frames_object_key"), "frames", ["object_key"], unique=False)

    op.create_table(
        "file_segments",
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("tensor_id", sa.CHAR(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.CheckConstraint('"offset" >= 0 AND length >= 0', name=op.f("ck_file_segments_extent_nonnegative")),
        sa.ForeignKeyConstraint(
            ["file_sha256"],
            ["file_objects.sha256"],
            name=op.f("fk_file_segments_file_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tensor_id"],
            ["tensors.id"],
            name=op.f("fk_file_segments_tensor_id_tensors"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("file_sha256", "seq", name=op.f("pk_file_segments")),
    )
    op.create_index(op.f("ix_file_segments_tensor_id"), "file_segments", ["tensor_id"], unique=False)

    op.create_table(
        "ingest_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_ingest_jobs_state")
        ),
        sa.ForeignKeyConstraint(
            ["file_sha256"],
            ["file_objects.sha256"],
            name=op.f("fk_ingest_jobs_file_sha256_file_objects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repositories.id"],
            name=op.f("fk_ingest_jobs_repo_id_repositories"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_jobs")),
    )
    op.create_index(op.f("ix_ingest_jobs_file_sha256"), "ingest_jobs", ["file_sha256"], unique=False)
    op.create_index(op.f("ix_ingest_jobs_state"), "ingest_jobs", ["state"], unique=False)

    op.create_table(
        "refs",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("commit_oid", sa.CHAR(length=40), nullable=False),
        sa.ForeignKeyConstraint(["commit_oid"], ["commits.oid"], name=op.f("fk_refs_commit_oid_commits")),
        sa.ForeignKeyConstraint(
            ["repo_id"], ["repositories.id"], name=op.f("fk_refs_repo_id_repositories"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("repo_id", "name", name=op.f("pk_refs")),
    )

    op.create_table(
        "tree_entries",
        sa.Column("commit_oid", sa.CHAR(length=40), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.CHAR(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["commit_oid"],
            ["commits.oid"],
            name=op.f("fk_tree_entries_commit_oid_commits"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_sha256"],
            ["file_objects.sha256"],
            name=op.f("fk_tree_entries_file_sha256_file_objects"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("commit_oid", "path", name=op.f("pk_tree_entries")),
    )
    op.create_index(op.f("ix_tree_entries_file_sha256"), "tree_entries", ["file_sha256"], unique=False)


def downgrade() -> None:
    # Children before parents, the reverse of upgrade().
    op.drop_index(op.f("ix_tree_entries_file_sha256"), table_name="tree_entries")
    op.drop_table("tree_entries")
    op.drop_table("refs")
    op.drop_index(op.f("ix_ingest_jobs_state"), table_name="ingest_jobs")
    op.drop_index(op.f("ix_ingest_jobs_file_sha256"), table_name="ingest_jobs")
    op.drop_table("ingest_jobs")
    op.drop_index(op.f("ix_file_segments_tensor_id"), table_name="file_segments")
    op.drop_table("file_segments")
    op.drop_index(op.f("ix_frames_object_key"), table_name="frames")
    op.drop_table("frames")
    op.drop_index(op.f("ix_file_objects_fingerprint"), table_name="file_objects")
    op.drop_index(op.f("ix_file_objects_family_id"), table_name="file_objects")
    op.drop_table("file_objects")
    op.drop_index(op.f("ix_commits_repo_id"), table_name="commits")
    op.drop_table("commits")
    op.drop_table("tokens")
    op.drop_index(op.f("ix_tensors_base_tensor_id"), table_name="tensors")
    op.drop_table("tensors")
    op.drop_table("store_objects")
    op.drop_table("repositories")
    op.drop_index(op.f("ix_families_fingerprint"), table_name="families")
    op.drop_table("families")
