"""The ingest queue of distributed mode: each job id becomes a Celery message on the broker."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from kombu.exceptions import OperationalError as BrokerError

from storage.app.ports import Sessions
from storage.catalog import jobs
from storage.catalog.db import make_engine, session_factory, session_scope
from storage.settings import Settings
from workers.celery_app import DEFAULT_QUEUE, INGEST_TASK, create_app, ingest_time_limits

log = logging.getLogger(__name__)

# A commit must not hang on a dead broker: three tries within ~1.5 s, then the job is left queued in
# the catalog, where `requeue_unfinished` finds it.
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# `wait` reads the catalog this often: a job takes seconds at least, and each poll is one small query.
WAIT_POLL_SECONDS = 0.2


class CeleryQueue:
    """`IngestQueue` (storage/app/ports.py) over Celery: `enqueue` sends the `deltahub.ingest` task.

    `sessions` opens the catalog, where `wait` watches the jobs sent (workers record their outcome there,
    there is no result backend); a sender that never waits may leave it out.
    """

    def __init__(self, settings: Settings, sessions: Sessions | None = None, *, queue: str = DEFAULT_QUEUE) -> None:
        self.queue = queue
        self.app = create_app(settings, queue=queue)
        self._sessions = sessions
        self._sent: list[int] = []

    def enqueue(self, job_id: int) -> None:
        try:
            self.app.send_task(
                INGEST_TASK, args=[job_id], queue=self.queue, retry=True, retry_policy=PUBLISH_RETRY_POLICY
            )
        except (BrokerError, OSError) as exc:
            # The commit that queued the job has happened and its files are served from staging: fail
            # loudly in the log, not in the user's request.
            log.error("ingest job %s is queued in the catalog but not on the broker (%s); "
                      "`requeue_unfinished` sends it again", job_id, exc)
        self._sent.append(job_id)

    def wait(self, timeout: float | None = None) -> None:
        if self._sessions is None:
            raise TypeError("this CeleryQueue has no catalog to wait on: build it with `sessions`")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._sent:
            with self._sessions() as s:
                self._sent = [j for j in self._sent if (job := jobs.get_job(s, j)) and job.state in jobs.UNFINISHED]
            if not self._sent:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self._sent)} ingest jobs still running")
            time.sleep(WAIT_POLL_SECONDS)

    def close(self) -> None:
        self.app.close()


def requeue_stale(settings: Settings, *, queue: str = DEFAULT_QUEUE) -> int:
    """Send again the jobs left "running" by a worker that died: any older than the hard time limit.

    The broker would redeliver them too, but only after its visibility timeout (close to an hour);
    `deltahub worker` calls this at start so a restarted worker picks them up at once.
    """
    _, hard = ingest_time_limits(settings)
    cutoff = datetime.now(UTC) - timedelta(seconds=hard)
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(session_factory(engine)) as s:
            stale = jobs.stale_running_jobs(s, cutoff)
    finally:
        engine.dispose()
    _send(settings, queue, stale)
    return len(stale)


def _send(settings: Settings, queue: str, job_ids: list[int]) -> None:
    if not job_ids:
        return
    sender = CeleryQueue(settings, queue=queue)
    try:
        for job_id in job_ids:
            sender.enqueue(job_id)
    finally:
        sender.close()


def requeue_unfinished(settings: Settings, *, queue: str = DEFAULT_QUEUE) -> int:
    """Send a task for every queued or running job in the catalog; returns how many were sent.

    Safe at any time: a job already on the broker gets a second message, and ingest is idempotent; a
    message for a job that has finished by the time it is delivered does nothing.
    """
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(session_factory(engine)) as s:
            pending = jobs.unfinished_jobs(s)
    finally:
        engine.dispose()
    _send(settings, queue, pending)
    return len(pending)
