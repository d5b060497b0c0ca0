"""The JSON body bound applies by route: streaming routes (LFS PUTs, ndjson commits, Xet uploads)
bound their own bodies and take more than it; every other route is cut at it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
LIMIT = 2048


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path, replace(TEST_OPTIONS, max_json_bytes=LIMIT))


def test_streaming_routes_take_bodies_past_the_json_bound(service: RunningService) -> None:
    assert service.http.post("/api/repos/create", json={"name": "m", "organization": "alice"},
                             headers=AUTH).status_code == 200
    data = os.urandom(8 * LIMIT)
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}
    href = service.http.post("/alice/m.git/info/lfs/objects/batch", json=batch, headers=AUTH).json()[
        "objects"][0]["actions"]["upload"]["href"]
    assert service.http.put(href, content=data).status_code == 200
    inline = os.urandom(3 * LIMIT // 4 * 2)
    lines = [{"key": "header", "value": {"summary": "big inline", "description": ""}},
             {"key": "file", "value": {"path": "inline.bin", "content": base64.b64encode(inline).decode(),
                                       "encoding": "base64"}},
             {"key": "lfsFile", "value": {"path": "lfs.bin", "algo": "sha256", "oid": oid, "size": len(data)}}]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    assert len(body) > LIMIT
    answer = service.http.post("/api/models/alice/m/commit/main", content=body,
                               headers={**AUTH, "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200, answer.text


def test_other_routes_are_cut_at_the_bound(service: RunningService) -> None:
    body = json.dumps({"files": [{"path": "x" * 100, "size": 1}] * 40}).encode()
    assert len(body) > LIMIT
    answer = service.http.post("/api/models/alice/m/preupload/main", content=body,
                               headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"] == f"request body too large: more than {LIMIT} bytes"
