"""Maintenance jobs behind `admin rebase` and `admin requeue`: choosing what to redo, then queueing it."""

from __future__ import annotations

from dataclasses import dataclass

from storage.catalog import jobs
from storage.catalog.maintenance import RebaseCandidate, failed_files, rebase_candidates
from workers.jobs.context import JobContext

__all__ = ["RebaseCandidate", "RequeuePlan", "plan_rebases", "plan_requeue"]


def plan_rebases(ctx: JobContext) -> list[RebaseCandidate]:
    """Stored files whose declared base now holds a stored file of their architecture they are not yet
    coded against (run each with `workers.jobs.lineage.rebase_file`)."""
    with ctx.session() as s:
        return rebase_candidates(s)


@dataclass(frozen=True, slots=True)
class RequeuePlan:
    job_ids: list[int]
    # Failed files left out because the repository of their latest job is gone (GC will collect them).
    orphaned: list[str]


def plan_requeue(ctx: JobContext, *, unfinished: bool) -> RequeuePlan:
    """New ingest jobs for every failed file (and, if asked, the ids of queued or running jobs), recorded
    in the catalog; the caller hands them to a queue."""
    with ctx.session() as s:
        job_ids = jobs.unfinished_jobs(s) if unfinished else []
        orphaned = []
        for failed in failed_files(s):
            if failed.repo_id is None:
                orphaned.append(failed.sha256)
                continue
            job_ids += jobs.queue_ingest(s, failed.repo_id, [(failed.path or "", failed.sha256)])
    return RequeuePlan(job_ids, orphaned)
