"""`admin rebase` and `admin requeue`: run the maintenance jobs of workers/jobs/maintenance.py and show
what they did."""

from __future__ import annotations

from rich.table import Table

from service.cli.common import NoDeployment, console, default_catalog
from storage.app.hub import Hub
from storage.catalog import jobs as catalog_jobs
from storage.catalog import repos as catalog_repos
from storage.settings import Settings
from workers.jobs.maintenance import RebaseCandidate, plan_rebases, plan_requeue

__all__ = ["RebaseCandidate", "display_name", "plan_rebases", "requeue_jobs"]


def display_name(hub: Hub, sha256: str) -> str:
    """Where a file is found ("namespace/name:path"), for people; its short hash when nowhere."""
    with hub.session() as s:
        found = catalog_repos.locations(s, sha256)
    return f"{found[0][0]}:{found[0][1]}" if found else sha256[:12]


def requeue_jobs(settings: Settings, *, unfinished: bool) -> None:
    """Queue ingest again for failed files (and, if asked, for unfinished jobs); embedded: run them here."""
    from workers.runtime import open_hub

    catalog = default_catalog(settings)
    if catalog is not None and not catalog.exists():
        raise NoDeployment(path=catalog)
    hub = open_hub(settings, resume=False)
    try:
        plan = plan_requeue(hub, unfinished=unfinished)
        for sha in plan.orphaned:
            console.print(f"skipping {sha[:12]}: its repository is gone (GC will collect it)")
        if not plan.job_ids:
            console.print("nothing to requeue: no failed files" + ("" if unfinished else " (see --unfinished)"))
            return
        assert hub.queue is not None  # open_hub always gives the hub a queue
        for job_id in plan.job_ids:
            hub.queue.enqueue(job_id)
        if settings.embedded:
            with console.status(f"running {len(plan.job_ids)} ingest jobs"):
                hub.queue.wait()
        _print_jobs(hub, plan.job_ids)
    finally:
        hub.close()


def _print_jobs(hub: Hub, job_ids: list[int]) -> None:
    table = Table(title="Requeued ingest jobs", title_justify="left")
    for column in ("job", "file", "state", "error"):
        table.add_column(column, overflow="fold")
    for job_id in job_ids:
        with hub.session() as s:
            job = catalog_jobs.get_job(s, job_id)
        if job is not None:
            table.add_row(str(job_id), display_name(hub, job.file_sha256), job.state, job.error or "")
    console.print(table)
