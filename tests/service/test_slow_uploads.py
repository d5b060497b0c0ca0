"""Stalled and trickling upload bodies cannot starve the server (issue 12, part 3, item 4).

Each upload holds a thread while it streams: 45 clients each sending 1 byte of a declared 1 MiB body
used to take every thread of the pool that also serves the API, so health and model info timed out
for everyone until they closed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
DECLARED = 1 << 20


@pytest.fixture
def slow_service(tmp_path: Path) -> Iterator[RunningService]:
    options = replace(TEST_OPTIONS, upload_stall_seconds=3.0, upload_min_bytes_per_second=32 * 1024,
                      uploads_per_client=60, upload_threads=4)
    yield from start_service(tmp_path, options)


def signed_url(service: RunningService, data: bytes) -> str:
    service.http.post("/api/repos/create", json={"name": "target", "organization": "alice"}, headers=AUTH)
    body = {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]}
    answer = service.http.post("/alice/target.git/info/lfs/objects/batch", json=body, headers=AUTH)
    return str(answer.json()["objects"][0]["actions"]["upload"]["href"])


def open_upload(url: str, first: bytes) -> socket.socket:
    """A PUT that declares DECLARED bytes and sends only `first`, then nothing."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {DECLARED}\r\nContent-Type: application/octet-stream\r\n\r\n")
    sock.sendall(head.encode() + first)
    return sock


def status_of(sock: socket.socket) -> int:
    answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else -1


def test_stalled_uploads_leave_the_api_answering_and_are_cut_with_408(slow_service: RunningService) -> None:
    data = os.urandom(DECLARED)
    url = signed_url(slow_service, data)
    stalled = [open_upload(url, data[:1]) for _ in range(45)]
    try:
        time.sleep(0.5)  # every upload has reached the server and holds (or waits for) an upload thread
        for _ in range(3):
            started = time.monotonic()
            health = slow_service.http.get("/api/v1/health", timeout=10)
            info = slow_service.http.get("/api/models/alice/target", timeout=10)
            assert health.status_code == 200 and info.status_code == 200
            assert time.monotonic() - started < 5
        # Each stalled body is cut once it has sent nothing for the stall period.
        assert [status_of(s) for s in stalled] == [408] * len(stalled)
    finally:
        for sock in stalled:
            sock.close()
    # Nothing was kept of them, and a real upload still goes through.
    assert slow_service.hub.has_file(hashlib.sha256(data).hexdigest()) is False
    answer = slow_service.http.put(url, content=data, timeout=60)
    assert answer.status_code == 200, answer.text


def test_a_trickling_body_is_cut_once_its_rate_stays_too_low(slow_service: RunningService) -> None:
    data = os.urandom(DECLARED)
    sock = open_upload(signed_url(slow_service, data), data[:1])
    try:
        started = time.monotonic()
        sent = 1
        sock.settimeout(0.5)
        while time.monotonic() - started < 20:
            try:
                sock.sendall(data[sent : sent + 10])  # 10 bytes every half second: never stalls, never arrives
            except OSError:
                break
            sent += 10
            try:
                reply = sock.recv(4096)
            except TimeoutError:
                continue
            assert reply.startswith(b"HTTP/1.1 408"), reply
            break
        else:
            pytest.fail("the trickling upload was never cut")
        assert time.monotonic() - started < 10
    finally:
        sock.close()


def test_one_client_may_run_only_so_many_uploads_at_once(tmp_path: Path) -> None:
    options = replace(TEST_OPTIONS, uploads_per_client=2, upload_stall_seconds=3.0)
    for service in start_service(tmp_path, options):
        data = os.urandom(DECLARED)
        url = signed_url(service, data)
        held = [open_upload(url, data[:1]) for _ in range(2)]
        time.sleep(0.5)
        extra = open_upload(url, data[:1])
        try:
            assert status_of(extra) == 429
        finally:
            for sock in [*held, extra]:
                sock.close()
