"""Celery tasks: thin wrappers that take ids, run a job of workers/ and decide whether to retry.

A task's message carries ids, never payloads; its outcome is recorded in the catalog by the job itself.
Every task is idempotent: a redelivered or duplicated message for a finished job does nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any, cast

from celery import Task, shared_task

from storage.app.hub import Hub
from storage.catalog import jobs
from storage.catalog.models import JobState
from workers import retry
from workers.celery_app import GC_TASK, INGEST_TASK, VERIFY_TASK, DeltahubCelery
from workers.jobs import gc, verify
from workers.jobs.ingest import run_ingest
from workers.retry import MAX_ATTEMPTS
from workers.runtime import open_hub

log = logging.getLogger(__name__)

# GC and verify walk every object or file of the hub: hours on a store of a few TB (verify rebuilds
# and hashes every byte, at a few hundred MB/s per core). The limit stops a scan wedged on a dead
# connection; they are run again on the next schedule.
MAINTENANCE_SOFT_TIME_LIMIT = 6 * 3600
MAINTENANCE_HARD_TIME_LIMIT = MAINTENANCE_SOFT_TIME_LIMIT + 600

_FINISHED = (JobState.DONE, JobState.FAILED)

_hubs: dict[int, Hub] = {}
_hubs_lock = threading.Lock()


def worker_hub(app: DeltahubCelery) -> Hub:
    """This process's hub for `app`, built on first use: after a prefork worker has forked its
    children, so that no database connection or store client is shared across processes."""
    with _hubs_lock:
        hub = _hubs.get(id(app))
        if hub is None:
            # Workers never migrate: schema changes are the deployment's step, run once.
            hub = _hubs[id(app)] = open_hub(app.deltahub_settings(), migrate=False)
        return hub


@shared_task(
    name=INGEST_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # An attempt killed at the hard time limit records nothing: give its message back, like one whose
    # worker died, so the job runs again; the catalog's attempt count still bounds it (see below).
    acks_on_timeout=False,
    # Retries are counted in the catalog, across deliveries; Celery's per-message count is no bound.
    max_retries=None,
)
def ingest(self: Task, job_id: int) -> dict[str, Any] | None:
    """Ingest the file of job `job_id`; retried with backoff, failed for good after MAX_ATTEMPTS."""
    app = cast(DeltahubCelery, self.app)
    hub = worker_hub(app)
    with hub.session() as s:
        job = jobs.get_job(s, job_id)
    if job is None or job.state in _FINISHED:
        return None  # a duplicate, or a redelivery of a job an earlier delivery finished
    if job.attempts >= MAX_ATTEMPTS:
        # Every attempt was spent and the last one recorded nothing: it was killed (hard time limit, out
        # of memory) with its worker process. Running it again would likely kill this worker too.
        detail = f"gave up after {job.attempts} attempts: the last one ended with its worker process"
        with hub.session() as s:
            jobs.fail_job(s, job_id, detail, final=True)
        log.error("ingest job %s: %s", job_id, detail)
        return None
    # The catalog counts attempts across every delivery (retries, redeliveries, requeues); Celery's
    # count only covers this message's retries.
    attempt = max(job.attempts, self.request.retries) + 1
    final = attempt >= MAX_ATTEMPTS
    try:
        result = run_ingest(hub, job_id, final_attempt=final)
    except Exception as exc:
        if retry.is_final(exc, attempt):
            # Recorded as failed by run_ingest (a refusal of the bytes at once, whatever the attempt);
            # its staged bytes stay and are served.
            return None
        raise self.retry(exc=exc, countdown=retry.retry_delay(attempt, app.retry_base_seconds)) from exc
    return None if result is None else asdict(result)


@shared_task(
    name=GC_TASK,
    bind=True,
    # A scan lost with its worker is simply run again on the next schedule; redelivering it while it
    # still runs (Redis does so after the visibility timeout) would run two scans at once.
    acks_late=False,
    soft_time_limit=MAINTENANCE_SOFT_TIME_LIMIT,
    time_limit=MAINTENANCE_HARD_TIME_LIMIT,
)
def collect_garbage(self: Task, dry_run: bool = False) -> dict[str, int]:
    report = gc.collect_garbage(worker_hub(cast(DeltahubCelery, self.app)), dry_run=dry_run)
    return {
        "files": report.files,
        "tensors": report.tensors,
        "objects": report.objects,
        "orphans": report.orphans,
        "bytes_freed": report.bytes_freed,
    }


@shared_task(
    name=VERIFY_TASK,
    bind=True,
    acks_late=False,  # as for GC: a lost scan is run again, never twice at once
    soft_time_limit=MAINTENANCE_SOFT_TIME_LIMIT,
    time_limit=MAINTENANCE_HARD_TIME_LIMIT,
)
def verify_files(self: Task, sample: int | None = None) -> dict[str, int]:
    report = verify.verify(worker_hub(cast(DeltahubCelery, self.app)), sample=sample)
    for problem in report.problems:
        log.error("verify: file %s at %s: %s", problem.sha256, problem.locations, problem.error)
    return {"checked": report.checked, "bytes_checked": report.bytes_checked, "problems": len(report.problems)}
