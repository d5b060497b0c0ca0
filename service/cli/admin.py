"""`deltahub admin ...`: act on a deployment directly through the hub (catalog and store), not over HTTP.

The deployment is the one the settings name: DELTAHUB_* variables, or in embedded mode the data
directory given by --data-dir or DELTAHUB_DATA_DIR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from service.cli.common import admin_hub, console, data_dir_option, human_bytes, redact_url, settings_for
from storage.core.errors import IntegrityError

if TYPE_CHECKING:
    from storage.app.hub import Hub
    from workers.jobs.gc import GcReport


class VerifyFailed(IntegrityError):
    """{count} stored file(s) failed verification (listed above): restore them from a backup or push them again"""


@click.group()
def admin() -> None:
    """Inspect and maintain a deployment: storage report, verify, GC, accounts, tokens, quotas, migrations."""


@admin.command()
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@data_dir_option
def report(output: str, data_dir: Path | None) -> None:
    """Logical vs physical bytes, savings by source, families and the largest repositories."""
    from service.cli.report import build_report, print_report

    with admin_hub(settings_for(data_dir)) as hub:
        document = build_report(hub)
    if output == "json":
        click.echo(json.dumps(document, indent=2, sort_keys=True))
    else:
        print_report(console, document)


@admin.command()
@data_dir_option
def families(data_dir: Path | None) -> None:
    """Every family: its base, its members and what each member is delta-coded against."""
    from service.cli.report import build_report, print_families

    with admin_hub(settings_for(data_dir)) as hub:
        document = build_report(hub)
    print_families(console, document, detail=True)


@admin.command()
@click.option("--sample", type=click.IntRange(min=1), default=None, help="Check N files chosen at random.")
@data_dir_option
def verify(sample: int | None, data_dir: Path | None) -> None:
    """Rebuild stored files and check their SHA-256; exits non-zero naming every file that fails and
    what repairs it (damaged files are recorded, and count as not held until a push repairs them)."""
    from workers.jobs.verify import verify as run_verify

    with admin_hub(settings_for(data_dir)) as hub, console.status("verifying stored files"):
        result = run_verify(hub, sample=sample)
    console.print(f"checked {result.checked} files ({human_bytes(result.bytes_checked)})")
    if result.ok:
        console.print("all files read back byte-exact")
        return
    table = Table(title="Problems", title_justify="left")
    for column in ("repository", "path", "sha256", "error", "repair"):
        table.add_column(column, overflow="fold")
    for problem in result.problems:
        for repo_id, path in problem.locations or (("-", "-"),):
            table.add_row(repo_id, path, problem.sha256, problem.error, problem.repair)
    console.print(table)
    console.print("Damaged files count as not held until repaired: a push of the same bytes uploads and "
                  "re-encodes them (docs/reliability.md, \"Repairing damaged data\").")
    raise VerifyFailed(count=len(result.problems))


@admin.command()
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@data_dir_option
def gc(dry_run: bool, data_dir: Path | None) -> None:
    """Delete files, tensors and store objects nothing references (after the grace period)."""
    from workers.jobs.gc import collect_garbage

    with admin_hub(settings_for(data_dir)) as hub, console.status("collecting garbage"):
        result = collect_garbage(hub, dry_run=dry_run)
        held = held_by_grace(hub, result, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    table = Table(title=f"Garbage collection{' (dry run)' if dry_run else ''}", title_justify="left")
    table.add_column("what")
    table.add_column(verb, justify="right")
    table.add_row("files", str(result.files))
    table.add_row("tensors", str(result.tensors))
    table.add_row("store objects", str(result.objects))
    table.add_row("orphaned store objects", str(result.orphans))
    table.add_row("bytes", human_bytes(result.bytes_freed))
    console.print(table)
    if held is not None:
        grace = hub.settings.gc_grace_seconds
        wait = max(0, round((held.until - datetime.now(UTC)).total_seconds() / 60))
        console.print(
            f"held by the grace period: {held.files} file(s), {human_bytes(held.bytes)} unreferenced for less than "
            f"DELTAHUB_GC_GRACE_SECONDS ({grace:g} s); collectable by a gc from {held.until:%Y-%m-%d %H:%M} UTC "
            f"(in {wait} min)",
            soft_wrap=True,
        )


@dataclass(frozen=True)
class Held:
    files: int
    bytes: int
    until: datetime


def held_by_grace(hub: Hub, result: GcReport, *, dry_run: bool) -> Held | None:
    """What nothing references but the grace period still protects, and when the last of it is free to go.

    Found by a dry run with no grace period (what GC would take if it were over); its clock is the newest
    of those objects' clocks. None when nothing is held.
    """
    from storage.catalog import gc as catalog_gc
    from workers.jobs.gc import collect_garbage

    grace = hub.settings.gc_grace_seconds
    if grace <= 0:
        return None
    now = collect_garbage(hub, dry_run=True, grace_seconds=0)
    # A dry run's own count is inside the zero-grace count; a real run has already deleted what it counted.
    counted_bytes, counted_files = (result.bytes_freed, result.files) if dry_run else (0, 0)
    keys = sorted(set(now.deleted_keys) - set(result.deleted_keys))
    held_bytes, held_files = now.bytes_freed - counted_bytes, now.files - counted_files
    if held_bytes <= 0 and held_files <= 0:
        return None
    with hub.session() as s:
        started = [_aware(t) for t in catalog_gc.clocks(s, keys)]
    started += [info.last_modified for info in map(hub.store.head, keys) if info is not None]
    newest = max(started, default=datetime.now(UTC))
    return Held(files=held_files, bytes=held_bytes, until=newest + timedelta(seconds=grace))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite keeps no zone


@admin.command()
@click.option("--dry-run", is_flag=True, help="List the rebases; change nothing.")
@data_dir_option
def rebase(dry_run: bool, data_dir: Path | None) -> None:
    """Re-encode stored files against the base they declare, where that base is now stored."""
    from service.cli.maintenance import display_name, plan_rebases

    with admin_hub(settings_for(data_dir)) as hub:
        plans = plan_rebases(hub)
        table = Table(title="Rebase", title_justify="left")
        for column in ("file", "onto", "result"):
            table.add_column(column, overflow="fold")
        if plans and not dry_run:
            from workers.jobs.lineage import rebase_file
        for plan in plans:
            if dry_run:
                outcome = "planned"
            else:
                outcome = "rebased" if rebase_file(hub, plan.sha256, plan.onto) else "kept (no smaller encoding)"
            table.add_row(display_name(hub, plan.sha256), f"{plan.declared_base}:{plan.onto_path}", outcome)
    if not plans:
        console.print("nothing to rebase: no stored file declares a stored base it is not yet coded against")
        return
    console.print(table)


@admin.command()
@data_dir_option
def migrate(data_dir: Path | None) -> None:
    """Create or upgrade the catalog schema (Alembic upgrade to the latest revision)."""
    from storage.catalog.db import upgrade

    settings = settings_for(data_dir)
    url = settings.resolved_database_url
    with console.status("migrating the catalog"):
        upgrade(url)
    console.print(f"catalog {redact_url(url)} is at the latest schema")


@admin.command()
@click.option(
    "--unfinished",
    is_flag=True,
    help="Also re-send queued and running jobs (only when no worker has them, e.g. the broker lost them).",
)
@data_dir_option
def requeue(unfinished: bool, data_dir: Path | None) -> None:
    """Retry the ingest of files whose ingest failed (embedded mode: run here and wait)."""
    from service.cli.maintenance import requeue_jobs

    requeue_jobs(settings_for(data_dir), unfinished=unfinished)
