"""`deltahub push`: upload a folder as one commit through the Hugging Face client, then optionally wait
for the server to store it and show what that saved."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from service.cli.client import POLL_SECONDS, NativeClient, endpoint_options, hf_client, remote_errors
from service.cli.common import IngestFailed, WaitTimedOut, console, human_bytes, percent
from service.cli.upload import TrackedFile, TransferCount, hash_operations, list_local_files
from storage.core.names import check_branch, split_repo_id

# The commit route reads the declared base from this header (a hint the server measures, never trusts).
BASE_HEADER = "X-Deltahub-Base-Model"


def transfer_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@click.command()
@click.argument("local_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo")
@click.option("--base", default=None, metavar="REPO", help="The model this one derives from (a hint for delta coding).")
@click.option("--revision", default="main", show_default=True, help="Branch to commit to (created if absent).")
@click.option("--message", "-m", default=None, help="Commit message.")
@click.option("--private", is_flag=True, help="Create the repository as private (if it does not exist).")
@click.option("--wait", is_flag=True, help="Wait until the server has stored every file; show the savings.")
@click.option("--wait-timeout", type=float, default=3600.0, show_default=True, help="Seconds --wait waits.")
@endpoint_options
def push(
    local_dir: Path,
    repo: str,
    base: str | None,
    revision: str,
    message: str | None,
    private: bool,
    wait: bool,
    wait_timeout: float,
    endpoint: str,
    token: str | None,
) -> None:
    """Upload LOCAL_DIR to repository REPO (namespace/name) as one commit.

    Files the server already holds are not sent again: the client learns that before transferring.
    """
    split_repo_id(repo)
    check_branch(revision)
    if base is not None:
        split_repo_id(base)
    files = list_local_files(local_dir)
    total = sum(f.size for f in files)
    api = hf_client(endpoint, token, headers={BASE_HEADER: base} if base else None)
    with remote_errors(endpoint, repo, revision):
        api.create_repo(repo, private=private, exist_ok=True)
    native = NativeClient(endpoint, token)
    try:
        with transfer_progress() as progress:
            count = TransferCount()
            hashing = progress.add_task("hashing", total=total, files=f"{len(files)} files")
            count.on_change = lambda: progress.update(hashing, completed=count.hashed_bytes)
            operations = hash_operations(files, count)
            progress.update(hashing, completed=total)
            sending = progress.add_task("uploading", total=total, files=f"0/{len(files)} files")
            count.on_change = lambda: progress.update(
                sending, completed=count.sent_bytes, files=f"{count.sent_files}/{len(files)} files"
            )
            count.phase = "send"
            with remote_errors(endpoint, repo, revision):
                commit = api.create_commit(
                    repo,
                    operations=[op for op, _ in operations],
                    revision=revision,
                    commit_message=message or f"Upload {local_dir.name} with deltahub",
                )
            count.phase = "done"
            for op, tracked in operations:
                if _unchanged(op):
                    tracked.sent = 0  # read only to compare with the server's copy, then left out
                tracked.close()
            progress.update(sending, completed=total, files=f"{len(files)}/{len(files)} files")
        _report_transfer([tracked for _, tracked in operations], total)
        console.print(f"committed {commit.oid} to {repo}@{revision}")
        if wait:
            shas = sorted({op.upload_info.sha256.hex() for op, _ in operations})
            _wait_for_ingest(native, repo, shas, wait_timeout)
    finally:
        native.close()


def _unchanged(op: Any) -> bool:
    """Whether the client left the file out of the commit as identical to the branch's copy.

    Small files are read once to compute the git blob id the server's oid is compared with; only the
    client knows whether it then sent them, and it keeps that on the operation.
    """
    remote = getattr(op, "_remote_oid", None)
    return remote is not None and remote == getattr(op, "_local_oid", None)


def _report_transfer(tracked: list[TrackedFile], total: int) -> None:
    sent = sum(t.sent for t in tracked)
    skipped = [t for t in tracked if t.sent == 0 and t.local.size > 0]
    console.print(
        f"sent {human_bytes(sent)} of {human_bytes(total)}; "
        f"{len(skipped)} of {len(tracked)} files ({human_bytes(sum(t.local.size for t in skipped))}) "
        "were already on the server or unchanged"
    )


def _wait_for_ingest(native: NativeClient, repo: str, shas: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("storing"), BarColumn(), TextColumn("{task.completed}/{task.total} files"), console=console
    ) as progress:
        task: TaskID = progress.add_task("storing", total=len(shas))
        pending = list(shas)
        while pending:
            for sha in list(pending):
                info = native.file(sha)
                if info["state"] == "failed" or (info["state"] == "stored" and info.get("ingest") in (None, "done")):
                    states[sha] = info
                    pending.remove(sha)
                    progress.advance(task)
            if pending:
                if time.monotonic() > deadline:
                    raise WaitTimedOut(seconds=timeout, count=len(pending))
                time.sleep(POLL_SECONDS)
    failed = [info for info in states.values() if info["state"] == "failed"]
    _print_savings(native, repo, states)
    if failed:
        detail = "; ".join(f"{info['sha256'][:12]}: {info.get('error')}" for info in failed)
        raise IngestFailed(count=len(failed), detail=detail)


def _print_savings(native: NativeClient, repo: str, states: dict[str, dict[str, Any]]) -> None:
    stored = [info for info in states.values() if info["state"] == "stored"]
    console.print(f"stored {len(stored)} of {len(states)} files ({human_bytes(sum(i['size'] for i in stored))})")
    storage = native.stats().get("storage", {})
    table = Table(title="Storage after this push", title_justify="left")
    table.add_column("")
    for column in ("logical", "physical", "saved", "saved %"):
        table.add_column(column, justify="right")
    rows = [("hub", storage)]
    # The server lists the repositories that hold the most exclusive bytes; this one may not be among them.
    rows += [(repo, row) for row in storage.get("repositories", []) if row.get("repo_id") == repo]
    for label, row in rows:
        logical, physical = int(row.get("logical_bytes", 0)), int(row.get("physical_bytes", 0))
        table.add_row(
            label,
            human_bytes(logical),
            human_bytes(physical),
            human_bytes(logical - physical),
            percent(logical - physical, logical),
        )
    console.print(table)
