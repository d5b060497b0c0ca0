"""Users, organizations, memberships and fine-grained tokens; tokens belong to users.

Existing catalogs keep every byte reachable and every token working as before. When the catalog holds
tokens or repositories, a hub administrator user named "admin" is created (or an existing namespace of
that name becomes it); every existing token becomes a token of that user, keeping its read or write
right (before this revision any token read every private repository and any write token wrote every
repository: an administrator's token does exactly that). Every other namespace a repository uses becomes
an organization whose only member is "admin", with the admin role. Operators then create users and
move people onto their own tokens (`deltahub admin users`, `orgs`, `token`).

Downgrading drops the accounts, memberships and scopes; fine-grained tokens are deleted (0005 cannot
express their limits, and must not widen them).

Revision ID: 0007_tenancy
Revises: 0006_redirects
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007_tenancy"
down_revision: str | None = "0006_redirects"
branch_labels: str | None = None
depends_on: str | None = None

ADMIN_USER = "admin"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("hub_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('user', 'org')", name=op.f("ck_accounts_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_accounts_name")),
    )
    op.create_table(
        "memberships",
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.CheckConstraint("role IN ('read', 'write', 'admin')", name=op.f("ck_memberships_role")),
        sa.ForeignKeyConstraint(["org_id"], ["accounts.id"], name=op.f("fk_memberships_org_id_accounts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["accounts.id"], name=op.f("fk_memberships_user_id_accounts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_index(op.f("ix_memberships_user_id"), "memberships", ["user_id"], unique=False)

    admin_id = _map_existing()
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("fine_grained", sa.Boolean(), nullable=False, server_default=sa.false()))
    if admin_id is not None:
        op.execute(sa.text("UPDATE tokens SET user_id = :admin").bindparams(admin=admin_id))
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("fine_grained", existing_type=sa.Boolean(), server_default=None)
        batch.create_foreign_key(op.f("fk_tokens_user_id_accounts"), "accounts", ["user_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index(op.f("ix_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "token_scopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=True),
        sa.Column("can_write", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["tokens.id"], name=op.f("fk_token_scopes_token_id_tokens"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_scopes")),
    )
    op.create_index(op.f("ix_token_scopes_token_id"), "token_scopes", ["token_id"], unique=False)


def _map_existing() -> int | None:
    """The admin user's id after mapping tokens' and repositories' namespaces; None on an empty catalog."""
    bind = op.get_bind()
    tokens = bind.execute(sa.text("SELECT count(*) FROM tokens")).scalar() or 0
    namespaces = sorted(
        ns for (ns,) in bind.execute(sa.text("SELECT DISTINCT namespace FROM repositories")) if ns
    )
    if not tokens and not namespaces:
        return None
    accounts = sa.table(
        "accounts", sa.column("id", sa.Integer()), sa.column("name", sa.String()), sa.column("kind", sa.String()),
        sa.column("hub_admin", sa.Boolean()), sa.column("created_at", sa.DateTime(timezone=True)),
    )
    # SQLite keeps naive UTC (storage/catalog/models.py UTCDateTime); PostgreSQL takes the aware time.
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now
    bind.execute(sa.insert(accounts).values(name=ADMIN_USER, kind="user", hub_admin=True, created_at=stamp))
    admin_id = int(bind.execute(sa.text("SELECT id FROM accounts WHERE name = :n"), {"n": ADMIN_USER}).scalar_one())
    orgs = [ns for ns in namespaces if ns != ADMIN_USER]
    if orgs:
        bind.execute(sa.insert(accounts), [
            {"name": ns, "kind": "org", "hub_admin": False, "created_at": stamp} for ns in orgs
        ])
        bind.execute(sa.text(
            "INSERT INTO memberships (org_id, user_id, role) "
            "SELECT id, :admin, 'admin' FROM accounts WHERE kind = 'org'"
        ), {"admin": admin_id})
    return admin_id


def downgrade() -> None:
    op.drop_index(op.f("ix_token_scopes_token_id"), table_name="token_scopes")
    op.drop_table("token_scopes")
    op.execute(sa.text("DELETE FROM tokens WHERE fine_grained"))
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index(op.f("ix_tokens_user_id"))
        batch.drop_constraint(op.f("fk_tokens_user_id_accounts"), type_="foreignkey")
        batch.drop_column("fine_grained")
        batch.drop_column("user_id")
    op.drop_index(op.f("ix_memberships_user_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("accounts")
