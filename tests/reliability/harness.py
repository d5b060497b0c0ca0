"""Running a deltahub process that is meant to die, and restarting after it.

A `Backend` is one hub's configuration (catalog URL, store, tunables) as both forms a process takes it:
`DELTAHUB_*` variables for a subprocess, and a Settings object for the test process itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from storage.app.hub import Hub
from storage.settings import Settings, load_settings
from tests.fixtures_s3 import S3_TEST_REGION
from workers.runtime import open_hub

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER_TIMEOUT = 120.0


@dataclass
class Backend:
    name: str
    overrides: dict[str, object]
    hubs: list[Hub] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {f"DELTAHUB_{key.upper()}": str(value) for key, value in self.overrides.items()}

    def settings(self) -> Settings:
        return load_settings(**self.overrides)

    def hub(self) -> Hub:
        """A hub in this process with no queue (what a test drives by hand)."""
        hub = Hub.from_settings(self.settings(), migrate=True)
        self.hubs.append(hub)
        return hub

    def restart(self, timeout: float = 120.0) -> Hub:
        """What a restarted `deltahub serve` or worker does: open the hub, resume unfinished ingest."""
        hub = open_hub(self.settings())
        self.hubs.append(hub)
        hub.queue.wait(timeout=timeout)  # type: ignore[union-attr]
        hub.queue.close()  # type: ignore[union-attr]
        hub.queue = None
        return hub

    def close(self) -> None:
        for hub in self.hubs:
            hub.engine.dispose()


def s3_overrides(endpoint: str, bucket: str) -> dict[str, object]:
    """Settings for a store in `bucket` of the S3 server at `endpoint` (the bucket is created)."""
    from storage.objectstore.s3 import S3ObjectStore

    S3ObjectStore(bucket, endpoint_url=endpoint, region=S3_TEST_REGION, access_key_id="testing",
                  secret_access_key="testing", create_bucket=True)
    return {
        "store_backend": "s3", "s3_endpoint_url": endpoint, "s3_bucket": bucket, "s3_prefix": "hub",
        "s3_region": S3_TEST_REGION, "s3_access_key_id": "testing", "s3_secret_access_key": "testing",
    }


def process_env(backend: Backend, crash_at: str | None = None, crash_signal: str | None = None,
                **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELTAHUB_")}
    env.update(backend.env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if crash_at:
        env["DELTAHUB_CRASH_AT"] = crash_at
    if crash_signal:
        env["DELTAHUB_CRASH_SIGNAL"] = crash_signal
    env.update(extra)
    return env


def start_driver(backend: Backend, *args: str, crash_at: str | None = None, crash_signal: str | None = None,
                 log: Path | None = None, **extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.reliability.driver", *args]
    env = process_env(backend, crash_at, crash_signal, **extra)
    if log is None:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def run_driver(backend: Backend, *args: str, crash_at: str | None = None, log: Path | None = None) -> int:
    """Run the driver to its end (or its death); its return code (-9 when it died by SIGKILL)."""
    process = start_driver(backend, *args, crash_at=crash_at, log=log)
    try:
        return process.wait(timeout=DRIVER_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_stopped(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until `process` has stopped itself (SIGSTOP at a crash point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) instead of stopping")
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError("the process did not reach its stop point")


def killed(returncode: int) -> bool:
    return returncode == -signal.SIGKILL


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""
