"""`deltahub admin user | org | quota ...`: users, organizations, members and quotas, in the catalog.

Thin over service.accounts.AccountAdmin and the hub's quotas (storage/app/quotas.py): the rules (valid
names, one name space for users and organizations, the roles) live there, not here. Listings take
`--format table|json`; the JSON is a list of objects whose keys are documented in docs/cli.md.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from service.accounts import ROLES, AccountAdmin
from service.cli.common import admin_hub, console, data_dir_option, human_bytes, percent, settings_for
from storage.catalog.accounts import AccountNotFound, AccountRecord
from storage.catalog.models import AccountKind
from storage.core.errors import InvalidInput

FORMAT = click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"(\d+)\s*([a-zA-Z]*)")


def parse_bytes(text: str) -> int | None:
    """A quota as typed: a byte count with an optional unit (10GB, 512MiB), or `none` for no quota."""
    if text.strip().lower() == "none":
        return None
    found = _SIZE.fullmatch(text.strip())
    if found is None or found.group(2).lower() not in UNITS:
        raise InvalidInput(detail=f"quota {text!r}: a number of bytes, optionally with a unit "
                           f"(KB, MB, GB, TB, KiB, MiB, GiB, TiB), or 'none'")
    return int(found.group(1)) * UNITS[found.group(2).lower()]


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def account_json(record: AccountRecord) -> dict[str, Any]:
    return {"name": record.name, "kind": record.kind, "hub_admin": record.hub_admin,
            "disabled_at": _when(record.disabled_at), "quota_bytes": record.quota_bytes,
            "created_at": _when(record.created_at)}


def emit(output: str, rows: list[dict[str, Any]], table: Table, empty: str) -> None:
    if output == "json":
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    elif not rows:
        console.print(empty)
    else:
        console.print(table)


def _accounts_table(title: str, records: list[AccountRecord], *, users: bool) -> Table:
    """Name, quota and creation time; for users also whether they administer the hub and are enabled."""
    table = Table(title=title, title_justify="left")
    user_columns = ("hub admin", "state") if users else ()
    for column in ("name", *user_columns, "quota", "created"):
        table.add_column(column, overflow="fold")
    for r in records:
        cells = [r.name]
        if users:
            cells += ["yes" if r.hub_admin else "no",
                      "active" if r.disabled_at is None else f"disabled {r.disabled_at:%Y-%m-%d %H:%M}"]
        cells += [human_bytes(r.quota_bytes) if r.quota_bytes is not None else "none", f"{r.created_at:%Y-%m-%d %H:%M}"]
        table.add_row(*cells)
    return table


# Users ------------------------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Create, list, disable and enable users (a user owns the namespace of its name)."""


@user.command("create")
@click.argument("name")
@click.option("--hub-admin", is_flag=True, help="A hub administrator: may read and write every namespace.")
@data_dir_option
def user_create(name: str, hub_admin: bool, data_dir: Path | None) -> None:
    """Create user NAME (give it a token with `admin token create TOKEN_NAME --user NAME`)."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).create_user(name, hub_admin=hub_admin)
    console.print(f"created {'hub administrator' if hub_admin else 'user'} {name!r}")


@user.command("list")
@FORMAT
@data_dir_option
def user_list(output: str, data_dir: Path | None) -> None:
    """Every user: hub administrator or not, active or disabled, quota."""
    with admin_hub(settings_for(data_dir)) as hub:
        records = AccountAdmin(hub.session).accounts(AccountKind.USER)
    emit(output, [account_json(r) for r in records], _accounts_table("Users", records, users=True), "no users")


@user.command("disable")
@click.argument("name")
@data_dir_option
def user_disable(name: str, data_dir: Path | None) -> None:
    """Disable user NAME: every token of theirs is refused from now on (their repositories stay)."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).set_disabled(name, True)
    console.print(f"disabled user {name!r}: their tokens are refused")


@user.command("enable")
@click.argument("name")
@data_dir_option
def user_enable(name: str, data_dir: Path | None) -> None:
    """Enable a disabled user again: their unrevoked tokens work again."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).set_disabled(name, False)
    console.print(f"enabled user {name!r}")


# Organizations ----------------------------------------------------------------------------------------


@click.group()
def org() -> None:
    """Create and list organizations and manage their members."""


@org.command("create")
@click.argument("name")
@click.option("--admin", "first_admin", metavar="USER", default=None, help="Its first member, with the admin role.")
@data_dir_option
def org_create(name: str, first_admin: str | None, data_dir: Path | None) -> None:
    """Create organization NAME (its namespace is NAME)."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).create_org(name, admin=first_admin)
    console.print(f"created organization {name!r}" + (f" with admin {first_admin!r}" if first_admin else ""))


@org.command("list")
@FORMAT
@data_dir_option
def org_list(output: str, data_dir: Path | None) -> None:
    """Every organization and its quota."""
    with admin_hub(settings_for(data_dir)) as hub:
        records = AccountAdmin(hub.session).accounts(AccountKind.ORG)
    emit(output, [account_json(r) for r in records], _accounts_table("Organizations", records, users=False),
         "no organizations")


@org.group("member")
def member() -> None:
    """Add, change, remove and list an organization's members and their roles."""


@member.command("add")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@click.option("--role", type=click.Choice(ROLES), default="read", show_default=True,
              help="read: read its private repositories; write: also push; admin: also manage it.")
@data_dir_option
def member_add(org_name: str, user_name: str, role: str, data_dir: Path | None) -> None:
    """Make USER a member of ORG with ROLE (or change the role of a member)."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).set_member(org_name, user_name, role)
    console.print(f"{user_name!r} is a member of {org_name!r} with the {role} role")


@member.command("remove")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@data_dir_option
def member_remove(org_name: str, user_name: str, data_dir: Path | None) -> None:
    """Remove USER from ORG."""
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).remove_member(org_name, user_name)
    console.print(f"removed {user_name!r} from {org_name!r}")


@member.command("list")
@click.argument("org_name", metavar="ORG")
@FORMAT
@data_dir_option
def member_list(org_name: str, output: str, data_dir: Path | None) -> None:
    """ORG's members and their roles."""
    with admin_hub(settings_for(data_dir)) as hub:
        members = AccountAdmin(hub.session).members(org_name)
    table = Table(title=f"Members of {org_name}", title_justify="left")
    table.add_column("user", overflow="fold")
    table.add_column("role")
    for name, role in members:
        table.add_row(name, role)
    emit(output, [{"user": name, "role": role} for name, role in members], table, f"{org_name!r} has no members")


# Quotas -----------------------------------------------------------------------------------------------


@click.group()
def quota() -> None:
    """Set and show namespace quotas on logical bytes (what users uploaded, before any dedup)."""


@quota.command("set")
@click.argument("namespace")
@click.argument("size", metavar="BYTES")
@data_dir_option
def quota_set(namespace: str, size: str, data_dir: Path | None) -> None:
    """Limit NAMESPACE (a user or an organization) to BYTES logical bytes (10GB, 512MiB; `none` lifts it).

    Pushes that would pass it are refused before any byte is sent; what is stored stays."""
    limit = parse_bytes(size)
    with admin_hub(settings_for(data_dir)) as hub:
        AccountAdmin(hub.session).set_quota(namespace, limit)
        usage, _ = hub.quotas.usage(namespace)
    shown = "no quota" if limit is None else f"a quota of {limit:,} bytes ({human_bytes(limit)})"
    console.print(f"{namespace!r} has {shown}; it holds {usage:,} logical bytes")


@quota.command("show")
@click.argument("namespaces", nargs=-1, metavar="[NAMESPACE]...")
@FORMAT
@data_dir_option
def quota_show(namespaces: tuple[str, ...], output: str, data_dir: Path | None) -> None:
    """Usage against quota for NAMESPACEs (default: every user and organization)."""
    with admin_hub(settings_for(data_dir)) as hub:
        known = [r.name for r in AccountAdmin(hub.session).accounts()]
        for name in namespaces:
            if name not in known:
                raise AccountNotFound(kind="user or organization", name=name)
        names = list(namespaces) or known
        rows: list[dict[str, Any]] = []
        for name in names:
            usage, limit = hub.quotas.usage(name)
            rows.append({"namespace": name, "logical_bytes": usage, "quota_bytes": limit})
    table = Table(title="Quotas (logical bytes)", title_justify="left")
    table.add_column("namespace", overflow="fold")
    for column in ("used", "quota", "used %"):
        table.add_column(column, justify="right")
    for row in rows:
        limit, used = row["quota_bytes"], int(row["logical_bytes"])
        table.add_row(str(row["namespace"]), human_bytes(used), "none" if limit is None else human_bytes(limit),
                      "-" if limit is None else percent(used, limit))
    emit(output, rows, table, "no namespaces")
