"""The S3 server fails mid-ingest: hung (paused), then gone and back (stopped and restarted).

The worker runs in a subprocess and freezes itself right after writing its third store object
(storage/core/faults.py in SIGSTOP mode), so the outage always begins at the same step of the same ingest.
The test then breaks S3, lets the worker run on into the outage for a few seconds, and repairs S3.
The worker must ride it out with its retries, finish every job, and leave no partial object behind:
every object in the bucket is either referenced by the catalog with its full size, or an orphan of a
failed attempt that GC removes. A server that comes back without its data is a different matter: no
retry can help, and the hub must say so rather than serve wrong bytes (last test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.catalog.models import IngestJob
from storage.core.errors import DeltahubError
from tests.reliability import scenario
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, s3_overrides, start_driver, tail, wait_stopped
from tests.reliability.invariants import check_clean, check_committed
from tests.reliability.s3server import S3Server
from workers.jobs.gc import collect_garbage
from workers.jobs.verify import verify

OUTAGE_SECONDS = 4.0
STOP_AT = "ingest.after_object_write:3"


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_s3_backend(tmp_path: Path, s3_server: S3Server) -> Iterator[Backend]:
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    backend = Backend("sqlite-own-s3", {
        "data_dir": tmp_path / "hub", **s3_overrides(s3_server.url, bucket), **scenario.HUB_SETTINGS
    })
    yield backend
    backend.close()


def _queue_everything(backend: Backend) -> None:
    hub = backend.hub()
    for repo_id in ("org/tuned", "org/base", "org/tuned2"):
        scenario.push(hub, repo_id, scenario.models()[repo_id])  # jobs queued, none run


def _worker_into_outage(backend: Backend, log: Path) -> subprocess.Popen[bytes]:
    """A worker frozen at STOP_AT, with S3 timeouts of one second."""
    worker = start_driver(backend, "resume", crash_at=STOP_AT, crash_signal="SIGSTOP", log=log,
                          DELTAHUB_TEST_S3_TIMEOUT="1")
    wait_stopped(worker)
    return worker


def _check_after(backend: Backend, figures: Figures) -> None:
    hub = backend.hub()
    with hub.session() as s:
        retried = s.scalar(select(func.count()).select_from(IngestJob).where(IngestJob.attempts > 1))
    assert retried, "no ingest attempt failed: the outage was not felt"
    readback = check_committed(hub, scenario.all_files())
    assert readback.problems == []
    assert all(hub.file_info(sha).state == "stored" for sha in scenario.all_files() if hub.has_file(sha))
    collect_garbage(hub, grace_seconds=0)  # orphans of the failed attempts
    assert check_clean(hub) == []
    figures.add(outages=1, bytes_checked=readback.bytes_checked, bytes_lost=readback.bytes_lost)


def test_ingest_rides_out_a_hung_s3_server(own_s3_backend: Backend, s3_server: S3Server, tmp_path: Path,
                                           figures: Figures) -> None:
    _queue_everything(own_s3_backend)
    log = tmp_path / "worker.log"
    worker = _worker_into_outage(own_s3_backend, log)
    s3_server.pause()
    os.kill(worker.pid, signal.SIGCONT)
    time.sleep(OUTAGE_SECONDS)
    assert worker.poll() is None, f"the worker gave up during the outage:\n{tail(log)}"
    s3_server.resume()
    assert worker.wait(timeout=120) == 0, tail(log)
    _check_after(own_s3_backend, figures)


def test_ingest_rides_out_an_s3_server_restart(own_s3_backend: Backend, s3_server: S3Server, tmp_path: Path,
                                              figures: Figures) -> None:
    _queue_everything(own_s3_backend)
    bucket = str(own_s3_backend.overrides["s3_bucket"])
    log = tmp_path / "worker.log"
    worker = _worker_into_outage(own_s3_backend, log)
    durable = s3_server.snapshot(bucket)  # what the restarted server's disks would still hold
    s3_server.stop()
    os.kill(worker.pid, signal.SIGCONT)
    time.sleep(OUTAGE_SECONDS)
    assert worker.poll() is None, f"the worker gave up during the outage:\n{tail(log)}"
    s3_server.start()
    s3_server.restore(bucket, durable)
    assert worker.wait(timeout=120) == 0, tail(log)
    _check_after(own_s3_backend, figures)


def test_an_s3_server_that_lost_its_data_is_reported_never_served(
    own_s3_backend: Backend, s3_server: S3Server, figures: Figures
) -> None:
    hub = own_s3_backend.hub()
    scenario.run_pre(hub)
    s3_server.stop()
    s3_server.start()  # moto's memory is gone: the bucket with it
    s3_server.restore(str(own_s3_backend.overrides["s3_bucket"]), {})
    hub = own_s3_backend.hub()  # a fresh process: no decoded frames cached from before
    for sha in scenario.all_files():
        if hub.has_file(sha):
            with pytest.raises(DeltahubError):
                b"".join(hub.read(sha))
    report = verify(hub)
    named = {where for problem in report.problems for where in problem.locations}
    assert named == {(repo, path) for repo in scenario.PRE for path in scenario.models()[repo]}
