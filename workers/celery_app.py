"""The Celery app of distributed mode: a Redis broker and the tasks of workers/tasks.py.

`celery -A workers.celery_app worker` finds `app` here. Importing this module connects to nothing and
reads no environment: the app reads the DELTAHUB_* settings when Celery first needs its configuration
(in a worker, at start-up). `create_app(settings)` builds an app from explicit settings instead; that is
what senders (`CeleryQueue`) and `run_worker` use.

Only workers/ imports Celery: the hub sees an `IngestQueue` (workers/celery_queue.py), nothing more.
Imports run one way: celery_app ← celery_queue ← runtime ← tasks.
"""

from __future__ import annotations

from typing import Any

import click
from celery import Celery, bootsteps

from storage.settings import InvalidSettings, Settings, load_settings
from workers.retry import RETRY_BASE_SECONDS, RETRY_MAX_SECONDS

INGEST_TASK = "deltahub.ingest"
GC_TASK = "deltahub.gc"
VERIFY_TASK = "deltahub.verify"
DEFAULT_QUEUE = "deltahub"

# The retry policy (back-off base and cap) is workers/retry.py's, shared with the embedded pool.

# Fractions of settings.gc_grace_seconds for one ingest attempt. Ingest writes its objects before the
# catalog rows that reference them, so GC may collect an object of a live attempt once it is older than
# the grace period; docs/format.md requires the hard limit below half of it, and 40% keeps a margin for
# the clock skew between the store and the GC host. The soft limit raises inside the attempt first, so
# it records its error in the catalog and is retried; the hard limit kills a worker stuck in C code.
INGEST_HARD_LIMIT_FRACTION = 0.4
INGEST_SOFT_LIMIT_FRACTION = 0.32
# Below this grace period an ingest attempt would get under ~24 s: too short to be safe or useful.
MIN_GC_GRACE_SECONDS = 60


def ingest_time_limits(settings: Settings) -> tuple[float, float]:
    """(soft, hard) time limits in seconds for one ingest attempt."""
    grace = settings.gc_grace_seconds
    if grace < MIN_GC_GRACE_SECONDS:
        raise InvalidSettings(
            detail=f"gc_grace_seconds is {grace}: a Celery worker needs at least {MIN_GC_GRACE_SECONDS}, "
            "since one ingest attempt must end within half of it"
        )
    return grace * INGEST_SOFT_LIMIT_FRACTION, grace * INGEST_HARD_LIMIT_FRACTION


def celery_config(settings: Settings, queue: str = DEFAULT_QUEUE) -> dict[str, Any]:
    """Celery's configuration for these settings (shared by senders and workers)."""
    if settings.broker_url is None:
        raise InvalidSettings(detail="broker_url is not set: Celery needs DELTAHUB_BROKER_URL (redis://...)")
    soft, hard = ingest_time_limits(settings)
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        # Redis hands an unacknowledged message to another worker after this long. A worker holds one
        # prefetched message while it runs another (prefetch 1, acks late), and a retry's message is
        # held until its countdown ends: longer than that, or a live job would be delivered twice.
        "broker_transport_options": {"visibility_timeout": int(2 * hard + RETRY_MAX_SECONDS + 60)},
        "task_default_queue": queue,
        # Ids in, nothing out: a job's outcome is in the catalog, so there is no result backend.
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # A message is acknowledged once its job has run, and given back if the worker dies meanwhile;
        # jobs are idempotent, so running one twice costs time, never data.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Jobs run for seconds to minutes: a worker takes one message at a time, leaving the rest to
        # idle workers.
        "worker_prefetch_multiplier": 1,
        # When the broker connection drops, Redis redelivers the running jobs' messages anyway: stop
        # them rather than run each twice at once.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
    }


class DeltahubCelery(Celery):
    """A Celery app that knows deltahub's settings (the worker's hub is built by workers/tasks.py)."""

    def __init__(self, settings: Settings | None = None, *, queue: str = DEFAULT_QUEUE) -> None:
        super().__init__("deltahub", include=["workers.tasks"])
        self._settings = settings
        self.ingest_queue = queue
        self.retry_base_seconds = RETRY_BASE_SECONDS
        # A promise: evaluated when Celery first reads its configuration, not here.
        self.add_defaults(lambda: celery_config(self.deltahub_settings(), queue))
        self.user_options["worker"].add(
            click.Option(
                ["--ingest-retry-base"],
                type=float,
                default=None,
                help=f"seconds before the first retry of a failed ingest attempt, doubling after each "
                f"(default {RETRY_BASE_SECONDS})",
            )
        )
        self.steps["worker"].add(_WorkerOptions)

    def deltahub_settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings


class _WorkerOptions(bootsteps.Step):
    """Applies deltahub's own `celery worker` options before the pool starts (children inherit them)."""

    def __init__(self, parent: Any, ingest_retry_base: float | None = None, **options: Any) -> None:
        super().__init__(parent, **options)
        if ingest_retry_base is not None:
            parent.app.retry_base_seconds = ingest_retry_base


def create_app(settings: Settings | None = None, *, queue: str = DEFAULT_QUEUE) -> DeltahubCelery:
    """A Celery app for `settings` (None: read DELTAHUB_* when the configuration is first needed)."""
    return DeltahubCelery(settings, queue=queue)


# What `celery -A workers.celery_app` loads; configured from the environment when first used.
app = create_app()
