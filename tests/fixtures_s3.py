"""S3 server fixture (moto_server on 127.0.0.1) and a fresh object store of every backend.

`object_store` is parametrized over the backends, so a test that takes it runs once per backend; the
S3 server starts only when an S3 store is first asked for, and once per session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.objectstore import LocalObjectStore, ObjectStore

# moto accepts any credentials; these keep boto3 from looking for real ones.
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
S3_TEST_REGION = "us-east-1"
S3_TEST_PART_SIZE = 5 << 20  # the smallest S3 allows, so multipart tests need only ~11 MiB
_STARTUP_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto_server on a free port; retry on another port if someone took it in between."""
    env = {**os.environ, **S3_TEST_CREDENTIALS}
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _STARTUP_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(url + "/"):
                return process, url
            time.sleep(0.05)
        _stop(process)
    raise RuntimeError(f"moto_server did not start; its log: {log_path}\n{log_path.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an S3 server (moto) on 127.0.0.1, running for the whole session."""
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    process, url = _start_moto(log_path)
    try:
        yield url
    finally:
        _stop(process)


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Dummy AWS credentials, set in the environment for this test only."""
    for name, value in S3_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return dict(S3_TEST_CREDENTIALS)


@pytest.fixture
def s3_store(s3_endpoint: str, s3_credentials: dict[str, str]) -> ObjectStore:
    """An S3 store on a bucket of its own, under a key prefix (so prefix handling is always exercised)."""
    from storage.objectstore.s3 import S3ObjectStore

    return S3ObjectStore(
        f"deltahub-test-{uuid.uuid4().hex[:16]}",
        prefix="deltahub",
        endpoint_url=s3_endpoint,
        region=S3_TEST_REGION,
        access_key_id=s3_credentials["AWS_ACCESS_KEY_ID"],
        secret_access_key=s3_credentials["AWS_SECRET_ACCESS_KEY"],
        part_size=S3_TEST_PART_SIZE,
        max_attempts=2,
        create_bucket=True,
    )


@pytest.fixture
def local_store(tmp_path: Path) -> ObjectStore:
    """A local-directory store in this test's temporary directory."""
    return LocalObjectStore(tmp_path / "objectstore")


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest) -> ObjectStore:
    """A fresh, empty store of each backend in turn."""
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store
