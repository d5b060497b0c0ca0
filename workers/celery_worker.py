"""`deltahub worker`: a Celery worker of distributed mode, started after resending what a dead worker left."""

from __future__ import annotations

from collections.abc import Sequence

from storage.settings import Settings
from workers.celery_app import DEFAULT_QUEUE, create_app
from workers.celery_queue import requeue_stale


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] = (DEFAULT_QUEUE,),
    loglevel: str = "INFO",
    extra_options: Sequence[str] = (),
) -> None:
    """Run a Celery worker in this process until it is told to stop (`deltahub worker`).

    `extra_options` are more `celery worker` options, e.g. `--ingest-retry-base=0.1` or `--pool=solo`.
    """
    requeue_stale(settings, queue=queues[0])
    worker_app = create_app(settings, queue=queues[0])
    worker_app.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency or settings.ingest_workers}",
            f"--queues={','.join(queues)}",
            *extra_options,
        ]
    )
