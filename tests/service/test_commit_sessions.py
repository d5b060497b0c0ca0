"""What a commit of files named by hash costs the catalog: the files are checked (may the writer name
each one, does its declared size hold) together, so the sessions a commit opens do not grow with its
number of files, and the checks still refuse what they refused one by one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event

from service.auth import StaticTokenStore, TokenInfo
from tests.service.conftest import TEST_OPTIONS, RunningService, start_service

# A writer who is not a hub administrator: what they may name by hash is decided by their rights.
TOKEN = "dh-write-carol"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    tokens = StaticTokenStore({TOKEN: TokenInfo("carol", True, token_name="carol")})
    runner = start_service(tmp_path, TEST_OPTIONS, tokens=tokens)
    running = next(runner)
    assert running.http.post("/api/repos/create", json={"name": "m", "organization": "carol"},
                             headers=AUTH).status_code == 200
    yield running
    next(runner, None)


def uploaded(service: RunningService, count: int, *, seed: int) -> list[tuple[str, int]]:
    """`count` files uploaded for carol/m (as an LFS PUT or a Xet shard records them)."""
    files = []
    for n in range(count):
        data = f"{seed}:{n}".encode() * (n + 1)
        info = service.hub.upload([data])
        files.append((info.sha256, len(data)))
    service.hub.grant_uploads("carol/m", [sha for sha, _ in files])
    return files


def counting_sessions(service: RunningService, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
    opened = 0

    def begun(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(service.hub.sessions, "after_begin", begun)
    try:
        return send(), opened
    finally:
        event.remove(service.hub.sessions, "after_begin", begun)


def commit(service: RunningService, files: list[tuple[str, int | None]]) -> tuple[int, str, int]:
    """POST a commit naming `files` by hash: (status, body, catalog sessions it opened)."""
    lines = [{"key": "header", "value": {"summary": "add"}}]
    lines += [{"key": "lfsFile", "value": {"path": f"f{n}.bin", "algo": "sha256", "oid": sha, "size": size}}
              for n, (sha, size) in enumerate(files)]
    body = "\n".join(json.dumps(line) for line in lines)
    answer, opened = counting_sessions(service, lambda: service.http.post(
        "/api/models/carol/m/commit/main", content=body, headers={**AUTH, "Content-Type": "application/x-ndjson"},
    ))
    return answer.status_code, answer.text, opened


def test_a_commit_opens_as_many_sessions_for_sixty_files_as_for_three(service: RunningService) -> None:
    few_status, few_text, few = commit(service, list(uploaded(service, 3, seed=1)))
    many_status, many_text, many = commit(service, list(uploaded(service, 60, seed=2)))
    assert few_status == 200 and many_status == 200, (few_text, many_text)
    assert many == few, (few, many)


def test_the_checks_still_refuse_an_unnamed_file_and_a_wrong_size_in_payload_order(
    service: RunningService,
) -> None:
    files: list[tuple[str, int | None]] = list(uploaded(service, 3, seed=3))
    stranger = hashlib.sha256(b"never uploaded for carol/m").hexdigest()
    service.hub.upload([b"never uploaded for carol/m"])  # held, but not by a right alice has
    status, text, _ = commit(service, [*files, (stranger, 26)])
    assert status == 404 and stranger in text
    (sha, size), *_ = files
    status, text, _ = commit(service, [(sha, size + 1), (stranger, 26)])
    assert status == 400, text
    assert f"has {size} bytes, not {size + 1}" in text
    status, text, _ = commit(service, [(sha, None), *files[1:]])
    assert status == 200, text


def test_an_lfs_upload_batch_answers_held_objects_in_sessions_that_do_not_grow_with_them(
    service: RunningService,
) -> None:
    def batch(files: list[tuple[str, int]]) -> tuple[list[dict[str, object]], int]:
        body = {"operation": "upload", "objects": [{"oid": sha, "size": size} for sha, size in files]}
        answer, opened = counting_sessions(service, lambda: service.http.post(
            "/carol/m.git/info/lfs/objects/batch", json=body,
            headers={**AUTH, "Accept": "application/vnd.git-lfs+json"},
        ))
        assert answer.status_code == 200, answer.text
        return answer.json()["objects"], opened

    few, few_sessions = batch(uploaded(service, 3, seed=4))
    many, many_sessions = batch(uploaded(service, 60, seed=5))
    assert all("actions" not in o and "error" not in o for o in few + many)  # held: nothing to send
    assert many_sessions == few_sessions, (few_sessions, many_sessions)
    stranger = hashlib.sha256(b"held, not for carol").hexdigest()
    service.hub.upload([b"held, not for carol"])
    (answer,), _ = batch([(stranger, 19)])
    assert "upload" in answer["actions"]  # held by the hub, not by a right carol has: asked for it
