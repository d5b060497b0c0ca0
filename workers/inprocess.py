"""The embedded worker: ingest jobs on a thread pool inside the serving process (no broker needed)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from storage.app.hub import Hub
from storage.catalog import jobs
from workers import retry

log = logging.getLogger(__name__)


class InProcessQueue:
    def __init__(self, hub: Hub, *, threads: int = 2) -> None:
        self.hub = hub
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deltahub-ingest")
        self._lock = threading.Lock()
        self._futures: dict[int, Future[None]] = {}

    def enqueue(self, job_id: int) -> None:
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return
            self._futures[job_id] = self._pool.submit(self._run, job_id)

    def resume(self) -> int:
        """Queue again every job left unfinished by an earlier process (crash, restart)."""
        with self.hub.session() as s:
            pending = jobs.unfinished_jobs(s)
        for job_id in pending:
            self.enqueue(job_id)
        return len(pending)

    def _run(self, job_id: int) -> None:
        from workers.jobs.ingest import run_ingest

        for attempt in range(1, retry.MAX_ATTEMPTS + 1):
            try:
                run_ingest(self.hub, job_id, final_attempt=attempt == retry.MAX_ATTEMPTS)
                return
            except Exception as exc:
                # run_ingest recorded the attempt (and logged a bug's traceback).
                if retry.is_final(exc, attempt):
                    return
                time.sleep(retry.retry_delay(attempt))

    def wait(self, timeout: float | None = None) -> None:
        """Block until every job queued so far has finished (tests, `push --wait` in embedded mode)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = [f for f in self._futures.values() if not f.done()]
            if not pending:
                return
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise TimeoutError(f"{len(pending)} ingest jobs still running")
            _wait_one(pending[0], remaining)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def _wait_one(future: Future[None], timeout: float | None) -> None:
    try:
        future.result(timeout=timeout)
    except TimeoutError:
        raise
    except Exception:
        log.debug("ingest job ended with an error (recorded in the catalog)")
