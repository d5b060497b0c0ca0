"""`deltahub push`: upload a folder as one commit through the Hugging Face client, then optionally wait
for the server to store it and show what that saved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
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

from service.cli.client import (
    POLL_SECONDS,
    NativeClient,
    can_write,
    endpoint_options,
    full_repo_id,
    hf_client,
    remote_errors,
    whoami,
)
from service.cli.common import (
    AccessDenied,
    IngestFailed,
    WaitTimedOut,
    console,
    err_console,
    human_bytes,
    percent,
)
from service.cli.upload import TrackedFile, TransferCount, hash_operations, list_local_files
from storage.core.errors import InvalidInput
from storage.core.names import check_branch, is_commit_oid, split_repo_id

if TYPE_CHECKING:
    from huggingface_hub import HfApi

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
@click.option(
    "--base",
    default=None,
    metavar="REPO",
    help="The model this one derives from: a hint for delta coding (warned about if the hub lacks it).",
)
@click.option("--revision", default="main", show_default=True, help="Branch to commit to.")
@click.option("--message", "-m", default=None, help="Commit message.")
@click.option("--private", is_flag=True, help="Create the repository as private (if it does not exist).")
@click.option("--wait", is_flag=True, help="Wait until the server has stored every file; show the savings.")
@click.option("--wait-timeout", type=float, default=3600.0, show_default=True, help="Seconds --wait waits.")
@endpoint_options(token_help="A deltahub token with write access (push creates repositories and commits).")
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
    """Upload LOCAL_DIR to repository REPO as one commit.

    REPO is namespace/name; a bare name is in the token's own namespace (as with `hf upload`). The
    repository is created if needed, and removed again if the push fails before its first commit.
    Files the server already holds are not sent again: the client learns that before transferring.
    """
    # Everything that can be refused is checked before a file is hashed or a repository created.
    split_repo_id(repo)
    check_branch(revision)
    if is_commit_oid(revision):
        raise InvalidInput(detail=f"--revision {revision} is a commit id: a push commits to a branch")
    if base is not None:
        split_repo_id(base)
    files = list_local_files(local_dir)
    api = hf_client(endpoint, token, headers=None)
    identity = whoami(api, endpoint, token)
    if not can_write(identity):
        raise AccessDenied(detail=f"token {identity.get('name')!r} is read-only; push needs one with write access")
    repo = full_repo_id(repo, identity)
    if base is not None:
        base = full_repo_id(base, identity)
        _check_base(api, endpoint, base)
        api = hf_client(endpoint, token, headers={BASE_HEADER: base})
    native = NativeClient(endpoint, token)
    try:
        before = int(native.stats().get("storage", {}).get("physical_bytes", 0)) if wait else 0
        with transfer_progress() as progress:
            count = TransferCount()
            total = sum(f.size for f in files)
            hashing = progress.add_task("hashing", total=total, files=f"{len(files)} files")
            count.on_change = lambda: progress.update(hashing, completed=count.hashed_bytes)
            operations = hash_operations(files, count)
            progress.update(hashing, completed=total)
            with new_repository(api, endpoint, repo, private=private):
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
            _wait_for_ingest(native, repo, shas, wait_timeout, physical_before=before)
    finally:
        native.close()


def _check_base(api: HfApi, endpoint: str, base: str) -> None:
    """Warn when the declared base is not on this hub: a typo would otherwise go unnoticed."""
    with remote_errors(endpoint, base):
        known = api.repo_exists(base)
    if not known:
        err_console.print(
            f"[bold yellow]warning:[/] --base {escape(base)}: no such repository on {escape(endpoint)} (or not "
            "visible to this token); kept as a hint: if it is pushed later, this model is re-encoded against it",
            soft_wrap=True,
        )


@contextmanager
def new_repository(api: HfApi, endpoint: str, repo: str, *, private: bool) -> Iterator[None]:
    """Create `repo` if it does not exist; if this push created it and fails before its first commit
    (an error, Ctrl-C), delete it again, so a failed push leaves no empty repository behind."""
    from huggingface_hub.errors import HfHubHTTPError

    with remote_errors(endpoint, repo):
        try:
            api.create_repo(repo, private=private)
            created = True
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code != 409:
                raise
            created = False  # it exists: this push only adds a commit
    try:
        yield
    except BaseException:
        if created:
            _remove_if_empty(api, repo)
        raise


def _remove_if_empty(api: HfApi, repo: str) -> None:
    try:
        # Nothing but the initial commit the hub made at creation: not even a commit that raced this push.
        if len(api.list_repo_commits(repo)) <= 1:
            api.delete_repo(repo)
    except Exception as exc:  # the push's own error is the one to report
        err_console.print(f"could not remove the empty repository {escape(repo)} this push created: {exc}")


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


def _wait_for_ingest(native: NativeClient, repo: str, shas: list[str], timeout: float, physical_before: int) -> None:
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
    _print_savings(native, repo, states, physical_before)
    if failed:
        detail = "; ".join(f"{info['sha256'][:12]}: {info.get('error')}" for info in failed)
        raise IngestFailed(count=len(failed), detail=detail)


def _print_savings(native: NativeClient, repo: str, states: dict[str, dict[str, Any]], physical_before: int) -> None:
    """The hub's totals, and what this repository costs the hub: its exclusive bytes, not its physical
    ones. A fine-tune's physical bytes include the base tensors it is delta-coded against, which the
    hub holds once for both; counting them against the fine-tune showed a negative saving."""
    stored = [info for info in states.values() if info["state"] == "stored"]
    console.print(f"stored {len(stored)} of {len(states)} files ({human_bytes(sum(i['size'] for i in stored))})")
    storage = native.stats().get("storage", {})
    table = Table(title="Storage after this push", title_justify="left")
    table.add_column("")
    for column in ("logical", "stored", "saved", "saved %"):
        table.add_column(column, justify="right")

    def add_row(label: str, logical: int, kept: int) -> None:
        table.add_row(label, human_bytes(logical), human_bytes(kept), human_bytes(logical - kept),
                      percent(logical - kept, logical))

    add_row("hub", int(storage.get("logical_bytes", 0)), int(storage.get("physical_bytes", 0)))
    # The server lists the repositories that hold the most exclusive bytes; this one may not be among them.
    row = next((r for r in storage.get("repositories", []) if r.get("repo_id") == repo), None)
    if row is not None:
        add_row(repo, int(row["logical_bytes"]), int(row["exclusive_bytes"]))
        shared = int(row["physical_bytes"]) - int(row["exclusive_bytes"])
        note = f"stored for {repo}: the bytes only it adds to the hub (what deleting it would free)"
        if shared > 0:
            note += (f"; the {human_bytes(shared)} it shares with other repositories, such as a base it is "
                     "delta-coded against, are counted once, in the hub row")
    else:
        grown = int(storage.get("physical_bytes", 0)) - physical_before
        add_row("this push", sum(int(info["size"]) for info in states.values()), grown)
        note = "stored for this push: how much the hub grew while it was pushed and stored"
    console.print(table)
    console.print(note, soft_wrap=True)
