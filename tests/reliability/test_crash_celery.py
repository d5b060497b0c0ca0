"""SIGKILL a Celery worker (distributed mode: Redis broker, acks late) in the middle of an ingest.

The killed worker never acknowledged its message; Redis would hand it out again after the visibility
timeout (tens of minutes by default). Recovery here is what an operator or a deployment does at once:
start a worker and send every unfinished job again (`requeue_unfinished`). The job then completes,
and the hub is exactly as if nothing had happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from storage.catalog import jobs
from tests.reliability import scenario
from tests.reliability.figures import Figures
from tests.reliability.harness import REPO_ROOT, Backend, killed, process_env, tail
from tests.reliability.invariants import check_clean, check_committed, footprint
from workers.celery_queue import CeleryQueue, requeue_unfinished
from workers.jobs.gc import collect_garbage

CELERY_POINTS = ["ingest.mid_encode:5", "ingest.before_catalog_commit", "rebase.mid_swap:2"]


@pytest.fixture
def celery_backend(tmp_path: Path) -> Iterator[Backend]:
    url = os.environ.get("DELTAHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is unreachable ({exc})")
        pytest.skip(f"Redis at {url} is unreachable ({exc}); set DELTAHUB_TEST_REDIS_URL")
    backend = Backend("sqlite-local-celery", {"data_dir": tmp_path / "hub", "broker_url": f"{url}/14",
                                              **scenario.HUB_SETTINGS})
    yield backend
    backend.close()


def _worker(backend: Backend, queue: str, log: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "--pool=solo",
               f"--queues={queue}", f"--hostname={queue}@%h", "--without-mingle", "--without-gossip",
               "--without-heartbeat", "--loglevel=INFO", "--ingest-retry-base=0.05"]
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=process_env(backend, crash_at), stdout=out,
                                stderr=subprocess.STDOUT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()


@pytest.mark.parametrize("point", CELERY_POINTS)
def test_celery_worker_killed_mid_ingest(point: str, celery_backend: Backend, tmp_path: Path,
                                         reference_footprint: dict[str, int], figures: Figures) -> None:
    hub = celery_backend.hub()
    scenario.run_pre(hub)
    queue, log = f"reliability-{uuid.uuid4().hex[:12]}", tmp_path / "worker.log"
    hub.queue = CeleryQueue(celery_backend.settings(), queue=queue)
    worker = _worker(celery_backend, queue, log, crash_at=point)
    try:
        scenario.push(hub, "org/base", scenario.models()["org/base"])  # the commit sends the jobs
        assert killed(worker.wait(timeout=90)), f"the worker did not die at {point}:\n{tail(log)}"
        worker = _worker(celery_backend, queue, log)
        assert requeue_unfinished(celery_backend.settings(), queue=queue) >= 1
        deadline = time.monotonic() + 90
        while True:
            with hub.session() as s:
                if not jobs.unfinished_jobs(s):
                    break
            assert time.monotonic() < deadline and worker.poll() is None, tail(log)
            time.sleep(0.1)
    finally:
        _stop(worker)
        hub.queue.close()  # type: ignore[union-attr]
        hub.queue = None

    readback = check_committed(hub, scenario.all_files())
    assert readback.problems == []
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    scenario.run_steps(hub)  # the rest of the scenario, to compare with the run nobody interrupted
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    assert footprint(hub) == reference_footprint
    figures.survived(point, readback.bytes_checked, readback.bytes_lost)
