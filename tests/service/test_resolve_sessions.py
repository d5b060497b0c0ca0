"""What one download costs the catalog: /resolve finds the repository (taking the access decision on it),
the commit and the file in one session, and a file whose read plan is cached is read without another,
whole or by range. A range read of a file never read whole has its plan built for the ranges after it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from huggingface_hub import HfApi
from sqlalchemy import event

from tests.models import make_weights, to_safetensors
from tests.service.conftest import WRITE_TOKEN, RunningService

PATH = "model.safetensors"


@dataclass
class CatalogUse:
    sessions: int = 0
    statements: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.sessions, self.statements = 0, []

    def touching(self, table: str) -> int:
        return sum(f"FROM {table}" in s for s in self.statements)


@pytest.fixture
def stored(ingesting_service: RunningService) -> Iterator[tuple[RunningService, bytes, CatalogUse]]:
    service = ingesting_service
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
    yield service, data, use
    event.remove(service.hub.sessions, "after_begin", begun)
    event.remove(service.hub.engine, "before_cursor_execute", executed)


URL = f"/alice/m/resolve/main/{PATH}"


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


def test_a_missing_path_answers_with_its_commit_in_one_session(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, _, use = stored
    answer = service.http.get("/alice/m/resolve/main/absent.json")
    assert answer.status_code == 404 and answer.headers["X-Error-Code"] == "EntryNotFound"
    assert len(answer.headers["X-Repo-Commit"]) == 40
    assert use.sessions == 1


def test_ranges_of_a_file_never_read_whole_come_from_its_cached_plan(
    stored: tuple[RunningService, bytes, CatalogUse],
) -> None:
    service, data, use = stored
    reader = service.hub.reader
    first = service.http.get(URL, headers={"Range": "bytes=10-99"})
    assert first.status_code == 206 and first.content == data[10:100]
    reader.wait_for_plans()  # the first range had the whole plan built in the background
    use.reset()
    later = service.http.get(URL, headers={"Range": "bytes=2000-2999"})
    assert later.status_code == 206 and later.content == data[2000:3000]
    assert use.sessions == 1 and use.touching("file_segments") == 0, use.statements
