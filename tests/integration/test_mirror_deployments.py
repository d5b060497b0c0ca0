"""The mirror on the distributed deployment: two API replicas (`deltahub serve`) and a Celery worker
over PostgreSQL, Redis and an S3 server, mirroring a real deltahub upstream behind a counting proxy.
Concurrent first requests to both replicas fetch the file from the upstream once (the catalog claim)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import hf_hub_download

from tests.integration.test_deployments import Deployment, base_environment, free_port
from tests.mirror_fixtures import proxy, upstream
from tests.service.conftest import WRITE_TOKEN, RunningService
from tests.service.test_mirror import FILES, MODEL, push, sha256
from tests.service.xet_support import xet_client_env
from tests.upstream_proxy import UpstreamProxy

__all__ = ["proxy", "upstream", "xet_client_env"]


@pytest.fixture
def mirror(tmp_path: Path, pg_database_url: str, s3_endpoint: str, s3_store: object,
           proxy: UpstreamProxy) -> Iterator[tuple[Deployment, str]]:
    env = base_environment(tmp_path)
    env.update(
        DELTAHUB_ENVIRONMENT="production", DELTAHUB_DATA_DIR=str(tmp_path / "data"),
        DELTAHUB_DATABASE_URL=pg_database_url, DELTAHUB_STORE_BACKEND="s3",
        DELTAHUB_S3_ENDPOINT_URL=s3_endpoint, DELTAHUB_S3_BUCKET=s3_store.bucket,  # type: ignore[attr-defined]
        DELTAHUB_S3_PREFIX="mirror", DELTAHUB_S3_ACCESS_KEY_ID="testing", DELTAHUB_S3_SECRET_ACCESS_KEY="testing",
        DELTAHUB_BROKER_URL=f"redis://127.0.0.1:6379/{1 + os.getpid() % 15}",
        DELTAHUB_SECRET_KEY="mirror-test-signing-key",
        DELTAHUB_MIRROR_UPSTREAM=proxy.url, DELTAHUB_MIRROR_UPSTREAM_TOKEN=WRITE_TOKEN,
    )
    import redis

    redis.Redis.from_url(env["DELTAHUB_BROKER_URL"]).flushdb()
    ports = [free_port(), free_port()]
    deployment = Deployment(f"http://127.0.0.1:{ports[0]}", "", env)
    deployment.deltahub("admin", "migrate")
    deployment.token = deployment.deltahub("admin", "token", "create", "mirror", "--write").splitlines()[-1]
    try:
        for n, port in enumerate(ports):
            deployment.start("serve", "--port", str(port), log=tmp_path / f"api{n}.log")
        deployment.start("worker", "--concurrency", "1", log=tmp_path / "worker.log")
        deployment.wait_healthy()
        Deployment(f"http://127.0.0.1:{ports[1]}", "", env, deployment.processes).wait_healthy()
        yield deployment, f"http://127.0.0.1:{ports[1]}"
    finally:
        deployment.stop()


def test_two_replicas_fetch_once_and_ingest(
    upstream: RunningService, proxy: UpstreamProxy, mirror: tuple[Deployment, str], tmp_path: Path
) -> None:
    deployment, second = mirror
    push(upstream, "alice/tiny", FILES)
    proxy.behaviour.slow = 1.0
    results: list[bytes] = []

    def download(n: int) -> None:
        url = deployment.url if n % 2 == 0 else second
        got = hf_hub_download("alice/tiny", "model.safetensors", endpoint=url, cache_dir=tmp_path / f"c{n}")
        results.append(Path(got).read_bytes())

    threads = [threading.Thread(target=download, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [MODEL] * 4
    assert len(proxy.downloads("model.safetensors")) == 1
    deadline, state = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        state = httpx.get(f"{deployment.url}/api/v1/files/{sha256(MODEL)}", timeout=10,
                          headers={"Authorization": f"Bearer {deployment.token}"}).json().get("state")
        if state == "stored":
            break
        time.sleep(0.5)
    assert state == "stored"
    proxy.stop()
    again = hf_hub_download("alice/tiny", "model.safetensors", endpoint=second, cache_dir=tmp_path / "after")
    assert Path(again).read_bytes() == MODEL
