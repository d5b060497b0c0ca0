"""Distributed mode end to end: the hub in this process, a real Celery worker in a subprocess, Redis.

Each test gets a queue of its own on a Redis database chosen per session, so parallel runs share the
server without taking each other's messages. The worker runs one job at a time (the solo pool, or
prefork with one child): it takes messages in queue order, which lets a test know that a duplicate was
handled once a later job is.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from storage.app.hub import Hub
from storage.app.views import FileStateName
from storage.catalog import jobs
from storage.catalog.jobs import JobView
from storage.catalog.models import FileObject, IngestJob, JobState
from storage.core.blocksums import CorruptStagedFile
from storage.objectstore import LocalObjectStore, ObjectStore
from storage.settings import InvalidSettings, Settings, load_settings
from tests.hubs import make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.celery_app import INGEST_TASK, celery_config, create_app, ingest_time_limits
from workers.celery_queue import CeleryQueue, requeue_unfinished
from workers.retry import MAX_ATTEMPTS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# Generous for a worker start-up plus a few small ingests on a loaded 2-core machine.
WAIT_SECONDS = 60.0
# Retries of failed attempts in tests: 5 attempts within a second.
TEST_RETRY_BASE_SECONDS = 0.05


@pytest.fixture(scope="session")
def broker_url() -> str:
    """A Redis database for this session's messages (1-15; 0 is the one people use by hand)."""
    base = os.environ.get("DELTAHUB_TEST_REDIS_URL", DEFAULT_REDIS_URL).rstrip("/")
    try:
        redis.Redis.from_url(base, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        reason = f"Redis at {base} is unreachable ({exc}); set DELTAHUB_TEST_REDIS_URL"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return f"{base}/{1 + secrets.randbelow(15)}"


@dataclass
class Deployment:
    hub: Hub
    queue: CeleryQueue
    worker: subprocess.Popen[bytes]
    worker_log: Path

    def log_tail(self) -> str:
        return self.worker_log.read_text(errors="replace")[-4000:] if self.worker_log.exists() else ""


def worker_environment(settings: Settings) -> dict[str, str]:
    """This process's environment, with DELTAHUB_* replaced by the variables giving `settings`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DELTAHUB_")}
    for field in settings.model_fields_set:
        value = getattr(settings, field)
        if value is None:
            continue
        env[f"DELTAHUB_{field.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


def start_worker(settings: Settings, queue: str, log_path: Path, *, through: str) -> subprocess.Popen[bytes]:
    """A worker on `queue`, started by the `celery` command (solo pool) or by `run_worker` (prefork)."""
    options = [
        f"--hostname={queue}@%h",
        # No broadcast chatter with other workers on the same Redis; each test's worker stands alone.
        "--without-mingle", "--without-gossip", "--without-heartbeat",
        f"--ingest-retry-base={TEST_RETRY_BASE_SECONDS}",
    ]
    if through == "celery":
        command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                   "--pool=solo", f"--queues={queue}", "--loglevel=INFO", *options]
    else:
        # One child process: it takes messages in queue order, as the solo pool does.
        script = ("import sys; from storage.settings import load_settings; "
                  "from workers.celery_worker import run_worker; "
                  "run_worker(load_settings(), concurrency=1, queues=[sys.argv[1]], extra_options=sys.argv[2:])")
        command = [sys.executable, "-c", script, queue, *options]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, cwd=REPO_ROOT, env=worker_environment(settings), stdout=log, stderr=subprocess.STDOUT
        )


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    # A cold shutdown: every test waits for its jobs, so none is running, and a warm one takes seconds.
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def forget_queue(url: str, queue: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)


@pytest.fixture(params=["sqlite-local", "postgresql-s3"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, broker_url: str) -> Iterator[Deployment]:
    queue_name = f"deltahub-test-{uuid.uuid4().hex[:16]}"
    store: ObjectStore
    if request.param == "sqlite-local":
        database_url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        store = LocalObjectStore(tmp_path / "objectstore")
        store_settings: dict[str, object] = {"store_dir": tmp_path / "objectstore"}
    else:
        from storage.objectstore.s3 import S3ObjectStore

        database_url = request.getfixturevalue("pg_database_url")
        store = request.getfixturevalue("s3_store")
        assert isinstance(store, S3ObjectStore)
        credentials = request.getfixturevalue("s3_credentials")
        store_settings = {
            "store_backend": "s3",
            "s3_bucket": store.bucket,
            "s3_prefix": store.prefix,
            "s3_endpoint_url": request.getfixturevalue("s3_endpoint"),
            "s3_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "s3_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        }
    hub = make_hub(tmp_path, database_url, store, broker_url=broker_url, **store_settings)
    queue = CeleryQueue(hub.settings, hub.session, queue=queue_name)
    hub.queue = queue
    log_path = tmp_path / "worker.log"
    # Both ways of starting a worker, one on each backend pair.
    through = "celery" if request.param == "sqlite-local" else "run_worker"
    worker = start_worker(hub.settings, queue_name, log_path, through=through)
    try:
        yield Deployment(hub, queue, worker, log_path)
    finally:
        stop_worker(worker)
        queue.close()
        forget_queue(broker_url, queue_name)
        hub.engine.dispose()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for_state(deployment: Deployment, sha256: str, state: FileStateName) -> None:
    """Until the file is in `state` and its ingest job has ended (a stored file's job may still be
    rebasing its relatives for a moment)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        info = deployment.hub.file_info(sha256)
        if info.state == state and info.ingest not in ("queued", "running"):
            return
        if time.monotonic() > deadline or deployment.worker.poll() is not None:
            pytest.fail(f"file {sha256} is {info.state!r} (job {info.ingest!r}), not {state!r}; "
                        f"worker log:\n{deployment.log_tail()}")
        time.sleep(0.05)


def job_of(hub: Hub, sha256: str) -> JobView:
    with hub.session() as s:
        (job,) = jobs.jobs_for_file(s, sha256)
    return job


def staging_key(hub: Hub, sha256: str) -> str:
    with hub.session() as s:
        file = s.get(FileObject, sha256)
        assert file is not None and file.staging_key is not None
        return file.staging_key


def push_recorded_only(hub: Hub, repo_id: str, files: dict[str, bytes]) -> list[int]:
    """Push without sending anything to the broker: the jobs wait in the catalog."""
    queue, hub.queue = hub.queue, None
    try:
        return push(hub, repo_id, files)
    finally:
        hub.queue = queue


def drain(deployment: Deployment, seed: int) -> None:
    """Wait until the worker has handled everything sent so far: it works in queue order, so a job sent
    now is done only after every earlier message."""
    marker = to_safetensors(make_weights(seed, {"marker.weight": (8, 8)}))
    push(deployment.hub, f"org/marker-{seed}", {"model.safetensors": marker})
    wait_for_state(deployment, sha(marker), "stored")


def test_pushed_model_is_stored_by_the_worker_and_reads_back(deployment: Deployment) -> None:
    hub = deployment.hub
    base_w = make_weights(1)
    base = to_safetensors(base_w, "BF16")
    tuned = to_safetensors(finetune(base_w, 2), "BF16")
    config = b'{"_name_or_path": "org/base", "hidden_size": 64}'
    push(hub, "org/base", {"model.safetensors": base})
    push(hub, "org/tuned", {"model.safetensors": tuned, "config.json": config})
    for data in (base, tuned, config):
        wait_for_state(deployment, sha(data), "stored")
        assert read_all(hub, sha(data)) == data
        job = job_of(hub, sha(data))
        assert (job.state, job.attempts, job.error) == (JobState.DONE, 1, None)
    assert hub.stats()["physical_bytes"] < hub.stats()["logical_bytes"]  # type: ignore[operator]


def test_wait_returns_once_the_worker_has_ended_every_job_sent(deployment: Deployment) -> None:
    models = [to_safetensors(make_weights(seed)) for seed in (11, 12)]
    for i, model in enumerate(models):
        push(deployment.hub, f"org/waited-{i}", {"model.safetensors": model})
    deployment.queue.wait(timeout=WAIT_SECONDS)
    for model in models:
        assert job_of(deployment.hub, sha(model)).state == JobState.DONE, deployment.log_tail()


def test_wait_times_out_while_no_worker_takes_the_jobs(
    tmp_path: Path, local_store: ObjectStore, broker_url: str
) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'catalog.sqlite3'}", local_store, broker_url=broker_url)
    queue_name = f"deltahub-idle-{secrets.token_hex(4)}"
    hub.queue = CeleryQueue(hub.settings, hub.session, queue=queue_name)
    try:
        push(hub, "org/idle", {"model.safetensors": to_safetensors(make_weights(13))})
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="1 ingest jobs still running"):
            hub.queue.wait(timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        hub.close()
        forget_queue(broker_url, queue_name)


def test_duplicate_task_for_a_done_job_is_a_no_op(deployment: Deployment) -> None:
    hub = deployment.hub
    data = to_safetensors(make_weights(3))
    (job_id,) = push(hub, "org/model", {"model.safetensors": data})
    wait_for_state(deployment, sha(data), "stored")
    deployment.queue.enqueue(job_id)  # as if Redis redelivered it
    deployment.queue.enqueue(job_id)
    drain(deployment, seed=4)
    job = job_of(hub, sha(data))
    assert (job.state, job.attempts) == (JobState.DONE, 1)
    assert read_all(hub, sha(data)) == data


def test_job_whose_staged_file_is_gone_fails_after_bounded_attempts(deployment: Deployment) -> None:
    hub = deployment.hub
    data = to_safetensors(make_weights(5))
    (job_id,) = push_recorded_only(hub, "org/lost", {"model.safetensors": data})
    hub.store.delete(staging_key(hub, sha(data)))
    deployment.queue.enqueue(job_id)
    wait_for_state(deployment, sha(data), "failed")
    job = job_of(hub, sha(data))
    assert (job.state, job.attempts) == (JobState.FAILED, MAX_ATTEMPTS)
    assert job.error and hub.file_info(sha(data)).error == job.error
    # A late duplicate of the failed job changes nothing.
    deployment.queue.enqueue(job_id)
    drain(deployment, seed=6)
    assert job_of(hub, sha(data)).attempts == MAX_ATTEMPTS
    assert hub.file_info(sha(data)).state == "failed"


def test_bytes_the_parser_refuses_fail_at_once_and_are_never_served(deployment: Deployment) -> None:
    hub = deployment.hub
    data = to_safetensors(make_weights(7))
    (job_id,) = push_recorded_only(hub, "org/garbled", {"model.safetensors": data})
    # The staged bytes rot after upload: their header no longer parses (an InvalidInput).
    garbled = b"\xff" * len(data)
    hub.store.put(staging_key(hub, sha(data)), garbled)
    deployment.queue.enqueue(job_id)
    wait_for_state(deployment, sha(data), "failed")
    job = job_of(hub, sha(data))
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert "header" in (job.error or "")
    # The staged object is kept (for the operator), but bytes that fail their checksums are never served.
    with pytest.raises(CorruptStagedFile):
        read_all(hub, sha(data))


def test_job_whose_last_attempt_lost_its_worker_is_failed_without_running(deployment: Deployment) -> None:
    hub = deployment.hub
    data = to_safetensors(make_weights(8))
    (job_id,) = push_recorded_only(hub, "org/poison", {"model.safetensors": data})
    with hub.session() as s:
        job = s.get(IngestJob, job_id)
        assert job is not None
        # What a worker killed in the middle of the last attempt leaves behind.
        job.state, job.attempts = JobState.RUNNING, MAX_ATTEMPTS
    deployment.queue.enqueue(job_id)
    wait_for_state(deployment, sha(data), "failed")
    job_view = job_of(hub, sha(data))
    assert (job_view.state, job_view.attempts) == (JobState.FAILED, MAX_ATTEMPTS)
    assert "worker" in (job_view.error or "")
    assert read_all(hub, sha(data)) == data


def test_requeue_unfinished_sends_every_job_left_in_the_catalog(deployment: Deployment) -> None:
    hub = deployment.hub
    models = [to_safetensors(make_weights(seed)) for seed in (9, 10)]
    for i, data in enumerate(models):
        push_recorded_only(hub, f"org/left-{i}", {"model.safetensors": data})
    time.sleep(0.5)
    assert all(hub.file_info(sha(data)).state == "staged" for data in models)  # nothing was sent
    assert requeue_unfinished(hub.settings, queue=deployment.queue.queue) == len(models)
    for data in models:
        wait_for_state(deployment, sha(data), "stored")
        assert read_all(hub, sha(data)) == data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_enqueue_with_the_broker_down_returns_promptly(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    queue = CeleryQueue(settings, queue="deltahub-unreachable")
    started = time.monotonic()
    queue.enqueue(1)  # the job stays queued in the catalog for `requeue_unfinished`; the commit succeeds
    assert time.monotonic() - started < 10
    queue.close()


@given(grace=st.integers(min_value=60, max_value=30 * 86400))
def test_an_ingest_attempt_ends_well_within_the_gc_grace_period(grace: int) -> None:
    settings = load_settings(broker_url="redis://127.0.0.1:6379/0", gc_grace_seconds=grace)
    soft, hard = ingest_time_limits(settings)
    assert 0 < soft < hard < grace / 2
    # Redis must not hand a running job's message (or the one prefetched behind it) to another worker.
    assert celery_config(settings)["broker_transport_options"]["visibility_timeout"] > 2 * hard


def test_too_short_a_grace_period_is_refused() -> None:
    settings = load_settings(broker_url="redis://127.0.0.1:6379/0", gc_grace_seconds=10)
    with pytest.raises(InvalidSettings, match="gc_grace_seconds"):
        ingest_time_limits(settings)


def test_ingest_task_acks_late_with_time_limits_from_the_settings() -> None:
    import workers.tasks  # noqa: F401  (registers the tasks on every app)

    settings = load_settings(broker_url="redis://127.0.0.1:6379/0", gc_grace_seconds=1000)
    app = create_app(settings)
    app.finalize(auto=True)
    task = app.tasks[INGEST_TASK]
    assert task.acks_late and task.reject_on_worker_lost and not task.acks_on_timeout
    assert (task.soft_time_limit, task.time_limit) == ingest_time_limits(settings) == (320, 400)


def test_the_app_reads_no_settings_until_celery_needs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAHUB_GC_GRACE_SECONDS", "not a number")
    app = create_app()  # what `celery -A workers.celery_app` imports: must not fail, nor connect
    assert not app.configured
    with pytest.raises(InvalidSettings, match="gc_grace_seconds"):
        _ = app.conf.broker_url
