"""An S3 server (moto) of a test's own, on a fixed port, that the test can pause, stop and restart.

The session's shared moto server (tests/fixtures_s3.py) must stay up for other tests; outages need
their own. moto keeps its buckets in memory, so a stopped server comes back empty: `snapshot` and
`restore` stand in for the durable disks a real S3 server restarts with.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.fixtures_s3 import S3_TEST_CREDENTIALS, S3_TEST_REGION


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env={**os.environ, **S3_TEST_CREDENTIALS}, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"moto did not start on {self.url}:\n{self.log.read_text()[-2000:]}")

    def pause(self) -> None:
        """The server hangs: connections are accepted by the kernel and never answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """The server is gone: connections are refused."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=S3_TEST_REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def snapshot(self, bucket: str) -> dict[str, bytes]:
        s3 = self.client()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for o in page.get("Contents", ())]
        return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def restore(self, bucket: str, objects: dict[str, bytes]) -> None:
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)
