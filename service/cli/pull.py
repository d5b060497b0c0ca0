"""`deltahub pull`: download one revision of a repository into a folder, resumably, every file verified.

The revision is resolved once, through the Hugging Face client (`model_info`, as snapshot_download does),
and every file is then fetched at that commit, so a push landing mid-pull cannot mix two revisions.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
from rich.table import Table

from service.cli.client import endpoint_options, hf_client, remote_errors
from service.cli.common import console, human_bytes
from service.cli.download import Downloader, RemoteFile
from service.cli.push import transfer_progress
from storage.core.errors import IntegrityError
from storage.core.names import split_repo_id

DOWNLOAD_THREADS = 4


class PullMismatch(IntegrityError):
    """{count} downloaded file(s) did not match the server's size and SHA-256 and were not kept: {paths}; \
pull again to fetch them anew"""


@click.command()
@click.argument("repo")
@click.argument("local_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--revision", default="main", show_default=True, help="Branch or commit id.")
@endpoint_options
def pull(repo: str, local_dir: Path, revision: str, endpoint: str, token: str | None) -> None:
    """Download repository REPO at REVISION into LOCAL_DIR; every file's SHA-256 is checked.

    An interrupted pull resumes where it stopped; files already in LOCAL_DIR with the right bytes are
    not fetched again.
    """
    split_repo_id(repo)
    api = hf_client(endpoint, token)
    with remote_errors(endpoint, repo, revision):
        info = api.model_info(repo, revision=revision, files_metadata=True)
    commit = info.sha or revision
    files = [RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []]
    total = sum(f.size for f in files)
    local_dir.mkdir(parents=True, exist_ok=True)
    bad: list[str] = []
    with transfer_progress() as progress:
        task = progress.add_task("download", total=total, files=f"0/{len(files)} files")
        done: list[str] = []  # appended from several threads: list.append is atomic
        downloader = Downloader(endpoint, token, repo, commit, local_dir, lambda n: progress.advance(task, n))

        def fetch(remote: RemoteFile) -> None:
            if not downloader.fetch(remote):
                bad.append(remote.path)
            done.append(remote.path)
            progress.update(task, files=f"{len(done)}/{len(files)} files")

        try:
            with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="deltahub-pull") as pool:
                for future in [pool.submit(fetch, remote) for remote in files]:
                    future.result()
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
