"""Maintenance jobs behind `admin rebase` and `admin requeue`: choosing what to redo, then redoing it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from service.cli.common import NoDeployment, console, default_catalog
from storage.app.hub import Hub
from storage.catalog import files as catalog_files
from storage.catalog import jobs as catalog_jobs
from storage.catalog import repos as catalog_repos
from storage.core.errors import InvalidInput, NotFound
from storage.settings import Settings


@dataclass(frozen=True, slots=True)
class RebasePlan:
    sha256: str
    onto: str
    file_name: str
    onto_name: str


def _name(locations: list[tuple[str, str]], sha256: str) -> str:
    return f"{locations[0][0]}:{locations[0][1]}" if locations else sha256[:12]


def plan_rebases(hub: Hub) -> list[RebasePlan]:
    """Stored safetensors files whose declared base repository now holds a stored file of the same
    architecture that they are not yet coded against (the same path preferred, as in sharded models)."""
    plans = []
    with hub.session() as s:
        for sha in catalog_repos.all_file_shas(s):
            me = catalog_files.snapshot(s, sha)
            if me.state != "stored" or me.kind != "safetensors" or not me.declared_base or not me.fingerprint:
                continue
            try:
                base_repo = catalog_repos.find_repo(s, me.declared_base)
            except (NotFound, InvalidInput):  # the declared base is not (yet) in this hub
                continue
            head = catalog_repos.branch_head(s, base_repo, "main")
            if head is None:
                continue
            mine = catalog_repos.locations(s, sha)
            my_paths = {path for _, path in mine}
            candidates = []
            for path, other in sorted(catalog_repos.tree_files(s, head.oid).items()):
                snap = catalog_files.snapshot(s, other)
                if other != sha and snap.state == "stored" and snap.fingerprint == me.fingerprint:
                    candidates.append((path not in my_paths, path, other))
            if not candidates:
                continue
            _, path, onto = min(candidates)
            if me.base_sha256 == onto:
                continue
            plans.append(RebasePlan(sha, onto, _name(mine, sha), f"{me.declared_base}:{path}"))
    return plans


def requeue_jobs(settings: Settings, *, unfinished: bool) -> None:
    """Queue ingest again for failed files (and, if asked, for unfinished jobs); embedded: run them here."""
    from workers.runtime import open_hub

    catalog = default_catalog(settings)
    if catalog is not None and not catalog.exists():
        raise NoDeployment(path=catalog)
    hub = open_hub(settings, resume=False)
    try:
        with hub.session() as s:
            job_ids = catalog_jobs.unfinished_jobs(s) if unfinished else []
            for sha in catalog_repos.all_file_shas(s):
                if catalog_files.snapshot(s, sha).state != "failed":
                    continue
                last = catalog_jobs.jobs_for_file(s, sha)
                repo_id = last[-1].repo_id if last else None
                if repo_id is None:
                    console.print(f"skipping {sha[:12]}: its repository is gone (GC will collect it)")
                    continue
                job_ids += catalog_jobs.queue_ingest(s, repo_id, [(last[-1].path or "", sha)])
        if not job_ids:
            console.print("nothing to requeue: no failed files" + ("" if unfinished else " (see --unfinished)"))
            return
        assert hub.queue is not None  # open_hub always gives the hub a queue
        for job_id in job_ids:
            hub.queue.enqueue(job_id)
        if settings.embedded:
            with console.status(f"running {len(job_ids)} ingest jobs"):
                hub.queue.wait()
        _print_jobs(hub, job_ids)
    finally:
        hub.close()


def _print_jobs(hub: Hub, job_ids: list[int]) -> None:
    table = Table(title="Requeued ingest jobs", title_justify="left")
    for column in ("job", "file", "state", "error"):
        table.add_column(column, overflow="fold")
    with hub.session() as s:
        for job_id in job_ids:
            job = catalog_jobs.get_job(s, job_id)
            if job is None:
                continue
            name = _name(catalog_repos.locations(s, job.file_sha256), job.file_sha256)
            table.add_row(str(job_id), name, job.state, job.error or "")
    console.print(table)
