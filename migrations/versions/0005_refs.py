"""Repository types (model, dataset) and tags beside branches.

Existing repositories become models; existing refs become branches. A repository that has no branch
keeps none: nothing is invented for it (a commit to its "main" creates the branch, see
storage/app/commits.py).

Downgrading drops every tag (0001 knows only branches) and fails if a model and a dataset share a name.

Revision ID: 0005_refs
Revises: 0004_xet
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_refs"
down_revision: str | None = "0004_xet"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("repo_type", sa.String(length=16), nullable=False, server_default="model"))
        batch.drop_constraint(op.f("uq_repositories_namespace_name"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_repositories_repo_type_namespace_name"), ["repo_type", "namespace", "name"]
        )
        batch.create_check_constraint(op.f("ck_repositories_repo_type"), "repo_type IN ('model', 'dataset')")
    with op.batch_alter_table("refs") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="branch"))
        batch.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch.create_check_constraint(op.f("ck_refs_kind"), "kind IN ('branch', 'tag')")


def downgrade() -> None:
    op.execute("DELETE FROM refs WHERE kind = 'tag'")
    with op.batch_alter_table("refs") as batch:
        batch.drop_constraint(op.f("ck_refs_kind"), type_="check")
        batch.drop_column("message")
        batch.drop_column("kind")
    with op.batch_alter_table("repositories") as batch:
        batch.drop_constraint(op.f("ck_repositories_repo_type"), type_="check")
        batch.drop_constraint(op.f("uq_repositories_repo_type_namespace_name"), type_="unique")
        batch.create_unique_constraint(op.f("uq_repositories_namespace_name"), ["namespace", "name"])
        batch.drop_column("repo_type")
