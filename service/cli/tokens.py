"""`deltahub admin token create | list | revoke`: API tokens, kept in the catalog as SHA-256 digests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from service.cli.common import admin_hub, console, data_dir_option, settings_for

if TYPE_CHECKING:
    from service.tokens import CatalogTokenStore
    from storage.app.hub import Hub


def _store(hub: Hub) -> CatalogTokenStore:
    from service.tokens import CatalogTokenStore  # the service's auth stack: only when a token is touched

    return CatalogTokenStore(hub.session)


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (clients send them as `Authorization: Bearer <token>`)."""


@token.command()
@click.argument("name")
@click.option("--write", is_flag=True, help="Allow pushing (creating repositories and commits).")
@data_dir_option
def create(name: str, write: bool, data_dir: Path | None) -> None:
    """Create token NAME; the token is printed once, alone on the last line."""
    with admin_hub(settings_for(data_dir)) as hub:
        store = _store(hub)
        # The token belongs to the hub administrator (created as user "admin" on a hub that has none).
        secret = store.create(name, can_write=write, user=store.ensure_admin_user())
    access = "read-write" if write else "read-only"
    console.print(f"created {access} token {name!r}; it is not stored and cannot be shown again:")
    # Plain echo, not Rich: the token must come out unwrapped, alone on its line, for scripts to read.
    click.echo(secret)


@token.command("list")
@data_dir_option
def list_tokens(data_dir: Path | None) -> None:
    """Every token's name, access and state (never the token itself)."""
    with admin_hub(settings_for(data_dir)) as hub:
        records = _store(hub).list()
    if not records:
        console.print("no tokens")
        return
    table = Table(title="Tokens", title_justify="left")
    for column in ("name", "access", "created", "state"):
        table.add_column(column, overflow="fold")
    for record in records:
        state = "active" if record.active else f"revoked {record.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(
            record.name, "write" if record.can_write else "read", f"{record.created_at:%Y-%m-%d %H:%M}", state
        )
    console.print(table)


@token.command()
@click.argument("name")
@data_dir_option
def revoke(name: str, data_dir: Path | None) -> None:
    """Revoke token NAME: requests carrying it are refused from now on."""
    with admin_hub(settings_for(data_dir)) as hub:
        _store(hub).revoke(name)
    console.print(f"revoked token {name!r}")
