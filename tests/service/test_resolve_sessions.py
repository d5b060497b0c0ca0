"""What one download costs the catalog: /resolve finds the repository (taking the access decision on it),
the commit and the file in one session, and a file whose read plan is cached is read without another,
whole or by range. A range read of a file never read whole has its plan built for the ranges after it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from sqlalchemy import event

from tests.models import make_weights, to_safetensors
from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

PATH = "model.safetensors"


@dataclass
class CatalogUse:
    sessions: int = 0
    statements: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.sessions, self.statements = 0, []

    def touching(self, table: str) -> int:
        return sum(f"FROM {table}" in s for s in self.statements)


@pytest.fixture(params=["rebuilt", "hot"])
def stored(
    request: pytest.FixtureRequest, tmp_path: Path, hf_client_env: Path
) -> Iterator[tuple[RunningService, bytes, CatalogUse]]:
    """A stored file on a service whose hot-file cache is off (every read rebuilt), or on."""
    hot = request.param == "hot"
    runner = start_service(tmp_path, TEST_OPTIONS, ingest=True, settings={"hot_cache_bytes": (64 << 20) * hot})
    service = next(runner)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    data = to_safetensors(make_weights(seed=5), metadata={"format": "pt"})
    api.create_repo("alice/m")
    api.upload_file(path_or_fileobj=data, path_in_repo=PATH, repo_id="alice/m")
    service.hub.queue.wait(timeout=120)
    sha = hashlib.sha256(data).hexdigest()
    assert service.hub.file_info(sha).state == "stored"

    use = CatalogUse()

    def begun(*_: object) -> None:
        use.sessions += 1

    def executed(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        use.statements.append(statement)

    event.listen(service.hub.sessions, "after_begin", begun)
    event.listen(service.hub.engine, "before_cursor_execute", executed)
    if hot:  # read whole twice: the second read leaves the verified copy
        for _ in range(2):
            assert service.http.get(URL).content == data
        wait_until(lambda: sha in service.hub.reads.hot)
    use.reset()
    yield service, data, use
    event.remove(service.hub.sessions, "after_begin", begun)
    event.remove(service.hub.engine, "before_cursor_execute", executed)
    next(runner, None)


URL = f"/alice/m/resolve/main/{PATH}"


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """The copy is kept once the body's iterator ends, which may be just after the client has it all."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_download_opens_one_session_and_finds_the_repository_once(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, data, use = stored
    assert service.http.get(URL).content == data  # the plan is cached from here on
    for method, headers, body in [
        ("HEAD", {}, b""),
        ("GET", {}, data),
        ("GET", {"Range": "bytes=100-4099"}, data[100:4100]),
        ("GET", {"Range": "bytes=-7"}, data[-7:]),
    ]:
        use.reset()
        answer = service.http.request(method, URL, headers=headers)
        assert answer.status_code in (200, 206) and answer.content == body
        assert use.sessions == 1, (method, headers, use.statements)
        assert use.touching("repositories") == 1, use.statements
        assert use.touching("file_segments") == 0, use.statements
        assert use.touching("frames") == 0, use.statements


def test_a_missing_path_answers_with_its_commit_in_one_session(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, _, use = stored
    answer = service.http.get("/alice/m/resolve/main/absent.json")
    assert answer.status_code == 404 and answer.headers["X-Error-Code"] == "EntryNotFound"
    assert len(answer.headers["X-Repo-Commit"]) == 40
    assert use.sessions == 1


@pytest.mark.parametrize("stored", ["rebuilt"], indirect=True)  # a hot file's ranges come from its copy
def test_ranges_of_a_file_never_read_whole_come_from_its_cached_plan(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, data, use = stored
    assert not service.hub.reads.hot.enabled
    reader = service.hub.reader
    first = service.http.get(URL, headers={"Range": "bytes=10-99"})
    assert first.status_code == 206 and first.content == data[10:100]
    reader.wait_for_plans()  # the first range had the whole plan built in the background
    use.reset()
    later = service.http.get(URL, headers={"Range": "bytes=2000-2999"})
    assert later.status_code == 206 and later.content == data[2000:3000]
    assert use.sessions == 1 and use.touching("file_segments") == 0, use.statements


def test_a_git_lfs_download_opens_one_session_as_resolve_does(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, data, use = stored
    url = f"/alice/m.git/info/lfs/objects/{hashlib.sha256(data).hexdigest()}"
    assert service.http.get(URL).content == data  # the plan is cached from here on
    for headers, body in [({}, data), ({"Range": "bytes=100-4099"}, data[100:4100])]:
        use.reset()
        answer = service.http.get(url, headers=headers)
        assert answer.status_code in (200, 206) and answer.content == body
        assert use.sessions == 1, (headers, use.statements)
        assert use.touching("repositories") == 1, use.statements
    use.reset()
    absent = service.http.get(f"/alice/m.git/info/lfs/objects/{'0' * 64}")
    assert absent.status_code == 404 and use.sessions == 1


def test_a_git_lfs_download_batch_opens_one_session_for_all_its_objects(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, data, use = stored
    sha = hashlib.sha256(data).hexdigest()
    unknown = [f"{n:064x}" for n in range(1, 600)]  # more than one IN list's worth
    objects = [{"oid": sha, "size": len(data)}, {"oid": "not-a-sha", "size": 1}]
    objects += [{"oid": oid, "size": 1} for oid in unknown]
    use.reset()
    answer = service.http.post(
        "/alice/m.git/info/lfs/objects/batch", json={"operation": "download", "objects": objects},
        headers={"Accept": "application/vnd.git-lfs+json"},
    )
    assert answer.status_code == 200, answer.text
    assert use.sessions == 1 and use.touching("repositories") == 1, use.statements
    found, malformed, *missing = answer.json()["objects"]
    assert found["size"] == len(data) and found["actions"]["download"]["href"].endswith(f"/objects/{sha}")
    assert malformed["error"]["code"] == 422
    assert [m["oid"] for m in missing] == unknown and {m["error"]["code"] for m in missing} == {404}
