"""`deltahub admin token create | list | revoke`: API tokens of users, kept in the catalog as SHA-256 digests.

A token belongs to a user (`--user`, by default the hub administrator, as before users existed) and has
a role, read or write; a fine-grained token instead reaches only what its `--scope`s name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from service.accounts import check_account_name
from service.auth import Scope
from service.cli.accounts import FORMAT, emit
from service.cli.common import admin_hub, console, data_dir_option, settings_for
from storage.core.errors import InvalidInput
from storage.core.names import split_repo_id

if TYPE_CHECKING:
    from service.tokens import CatalogTokenStore
    from storage.app.hub import Hub
    from storage.catalog.tokens import TokenRecord

SCOPE_HELP = "repo:NAMESPACE/NAME:read|write or namespace:NAMESPACE:read|write; repeat for several."


class InvalidScope(InvalidInput):
    """scope {scope!r}: {reason} (repo:NAMESPACE/NAME:read|write or namespace:NAMESPACE:read|write)"""


def parse_scope(text: str) -> Scope:
    """One `--scope`: a repository or a whole namespace, with read or write."""
    kind, _, rest = text.partition(":")
    target, _, right = rest.rpartition(":")
    if right not in ("read", "write"):
        raise InvalidScope(scope=text, reason="it ends with :read or :write")
    if kind == "repo":
        namespace, name = split_repo_id(target)
        if not namespace:
            raise InvalidScope(scope=text, reason="a repository is NAMESPACE/NAME")
        return Scope(namespace, name, right == "write")
    if kind == "namespace":
        return Scope(check_account_name(target), None, right == "write")
    raise InvalidScope(scope=text, reason="it starts with repo: or namespace:")


def scope_text(scope: Any) -> str:
    target = f"repo:{scope.namespace}/{scope.name}" if scope.name else f"namespace:{scope.namespace}"
    return f"{target}:{'write' if scope.can_write else 'read'}"


def _store(hub: Hub) -> CatalogTokenStore:
    from service.tokens import CatalogTokenStore  # the service's auth stack: only when a token is touched

    return CatalogTokenStore(hub.session)


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (clients send them as `Authorization: Bearer <token>`)."""


@token.command()
@click.argument("name")
@click.option("--user", "owner", metavar="USER", default=None,
              help="The user the token acts as [default: the hub administrator, user admin created if none].")
@click.option("--role", type=click.Choice(["read", "write"]), default=None,
              help="read: read what the user may read; write: also push where the user may [default: read].")
@click.option("--write", is_flag=True, help="Same as --role write.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help=f"Make the token fine-grained, reaching only what its scopes name: {SCOPE_HELP}")
@data_dir_option
def create(
    name: str, owner: str | None, role: str | None, write: bool, scopes: tuple[str, ...], data_dir: Path | None
) -> None:
    """Create token NAME of USER; the token is printed once, alone on the last line."""
    if scopes and (role is not None or write):
        raise InvalidInput(detail="a fine-grained token's rights are its --scope entries: drop --role/--write")
    if write and role == "read":
        raise InvalidInput(detail="--write contradicts --role read")
    can_write = write or role == "write"
    parsed = tuple(parse_scope(s) for s in scopes) if scopes else None
    with admin_hub(settings_for(data_dir)) as hub:
        store = _store(hub)
        # Without --user the token belongs to the hub administrator (user "admin" on a hub that has none).
        user = owner if owner is not None else store.ensure_admin_user()
        secret = store.create(name, can_write=can_write, user=user, scopes=parsed)
    if parsed is not None:
        access = "fine-grained (" + ", ".join(map(scope_text, parsed)) + ")"
    else:
        access = "read-write" if can_write else "read-only"
    console.print(f"created {access} token {name!r} of {user!r}; it is not stored and cannot be shown again:",
                  soft_wrap=True)
    # Plain echo, not Rich: the token must come out unwrapped, alone on its line, for scripts to read.
    click.echo(secret)


def _access(record: TokenRecord) -> str:
    if record.fine_grained:
        return " ".join(map(scope_text, record.scopes)) or "fine-grained, no scope"
    return "write" if record.can_write else "read"


def token_json(record: TokenRecord) -> dict[str, Any]:
    return {
        "name": record.name, "user": record.user, "role": "write" if record.can_write else "read",
        "fine_grained": record.fine_grained, "scopes": [scope_text(s) for s in record.scopes],
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@token.command("list")
@click.option("--user", "owner", metavar="USER", default=None, help="Only USER's tokens.")
@FORMAT
@data_dir_option
def list_tokens(owner: str | None, output: str, data_dir: Path | None) -> None:
    """Every token's name, user, access and state (never the token itself)."""
    with admin_hub(settings_for(data_dir)) as hub:
        records = _store(hub).list(owner)
    table = Table(title="Tokens", title_justify="left")
    for column in ("name", "user", "access", "created", "state"):
        table.add_column(column, overflow="fold")
    for record in records:
        state = "active" if record.active else f"revoked {record.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(record.name, record.user, _access(record), f"{record.created_at:%Y-%m-%d %H:%M}", state)
    emit(output, [token_json(r) for r in records], table, "no tokens")


@token.command()
@click.argument("name")
@data_dir_option
def revoke(name: str, data_dir: Path | None) -> None:
    """Revoke token NAME: requests carrying it are refused from now on."""
    with admin_hub(settings_for(data_dir)) as hub:
        _store(hub).revoke(name)
    console.print(f"revoked token {name!r}")
