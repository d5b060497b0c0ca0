"""`deltahub pull`: download one revision of a repository into a folder, resumably, every file verified.

The revision is resolved once, through the Hugging Face client (`model_info`, as snapshot_download does),
and every file is then fetched at that commit, so a push landing mid-pull cannot mix two revisions.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.table import Table

from service.cli.client import endpoint_options, full_repo_id, hf_client, remote_errors, whoami
from service.cli.common import Interrupted, console, human_bytes
from service.cli.download import PARTIAL_DIR, Downloader, RemoteFile
from service.cli.push import transfer_progress
from storage.core.errors import IntegrityError
from storage.core.names import split_repo_id

DOWNLOAD_THREADS = 4
JOIN_SECONDS = 0.2
# After Ctrl-C, how long the download threads get to finish the chunk they are writing.
STOP_GRACE_SECONDS = 1.0


class PullMismatch(IntegrityError):
    """{count} downloaded file(s) did not match the server's size and SHA-256 and were not kept: {paths}; \
pull again to fetch them anew"""


class PullInterrupted(Interrupted):
    """interrupted: files not yet complete are kept, partly downloaded, in {folder}; run the same pull \
again to resume"""


@click.command()
@click.argument("repo")
@click.argument("local_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--revision", default="main", show_default=True, help="Branch or commit id.")
@endpoint_options(token_help="A deltahub access token: needed for private repositories (read access is enough).")
def pull(repo: str, local_dir: Path, revision: str, endpoint: str, token: str | None) -> None:
    """Download repository REPO at REVISION into LOCAL_DIR; every file's SHA-256 is checked.

    REPO is namespace/name (with --token, a bare name is in the token's own namespace, as for push).
    An interrupted pull (Ctrl-C, a dropped connection) resumes where it stopped; files already in
    LOCAL_DIR with the right bytes are not fetched again.
    """
    namespace, _ = split_repo_id(repo)
    api = hf_client(endpoint, token)
    if not namespace:
        repo = full_repo_id(repo, whoami(api, endpoint, token) if token else None)
    with remote_errors(endpoint, repo, revision):
        info = api.model_info(repo, revision=revision, files_metadata=True)
    commit = info.sha or revision
    files = [RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []]
    total = sum(f.size for f in files)
    local_dir.mkdir(parents=True, exist_ok=True)
    bad: list[str] = []
    stop = threading.Event()
    with transfer_progress() as progress:
        task = progress.add_task("download", total=total, files=f"0/{len(files)} files")
        done: list[str] = []  # appended from several threads: list.append is atomic
        downloader = Downloader(endpoint, token, repo, commit, local_dir, lambda n: progress.advance(task, n), stop)

        def fetch(remote: RemoteFile) -> None:
            if not downloader.fetch(remote):
                bad.append(remote.path)
            done.append(remote.path)
            progress.update(task, files=f"{len(done)}/{len(files)} files")

        try:
            run_all(fetch, files, threads=DOWNLOAD_THREADS, stop=stop)
        except KeyboardInterrupt:
            progress.stop()
            raise PullInterrupted(folder=local_dir / PARTIAL_DIR) from None
        finally:
            downloader.close()
    if bad:
        raise PullMismatch(count=len(bad), paths=", ".join(sorted(bad)))
    table = Table(show_header=False, box=None)
    table.add_row("repository", f"{repo}@{revision}")
    table.add_row("commit", commit)
    table.add_row("files", f"{len(files)} ({human_bytes(total)}), SHA-256 verified")
    table.add_row("into", str(local_dir))
    console.print(table)


def run_all(
    work: Callable[[RemoteFile], None], files: list[RemoteFile], *, threads: int, stop: threading.Event
) -> None:
    """Run `work` on every file on `threads` threads; Ctrl-C stops them within a chunk and is re-raised.

    The threads are daemons: one blocked on a stalled connection cannot hold the process past the
    grace the others get to close their partial files.
    """
    pending = queue.SimpleQueue[RemoteFile]()
    for remote in files:
        pending.put(remote)
    errors: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set() and not errors:
            try:
                remote = pending.get_nowait()
            except queue.Empty:
                return
            try:
                work(remote)
            except Interrupted:
                return
            except BaseException as exc:  # handed to the main thread, which raises it
                errors.append(exc)

    workers = [threading.Thread(target=worker, name=f"deltahub-pull-{i}", daemon=True) for i in range(threads)]
    for thread in workers:
        thread.start()
    try:
        for thread in workers:
            while thread.is_alive():
                thread.join(JOIN_SECONDS)  # a bounded join: the main thread stays responsive to Ctrl-C
    except KeyboardInterrupt:
        stop.set()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        raise
    if errors:
        raise errors[0]
