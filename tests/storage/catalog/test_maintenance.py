"""The maintenance queries: what `admin rebase` and `admin requeue` would redo, in a fixed number of
queries however many files the hub holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from storage.app.hub import Hub
from storage.catalog import jobs
from storage.catalog.maintenance import failed_files, rebase_candidates
from storage.catalog.models import FileObject
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push
from tests.models import finetune, make_weights, to_safetensors


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store)


@contextmanager
def counted_queries(hub: Hub) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(hub.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(hub.engine, "before_cursor_execute", record)


def fail(hub: Hub, job_id: int) -> None:
    with hub.session() as s:
        jobs.start_job(s, job_id)
        jobs.fail_job(s, job_id, "store was down", final=True)


def test_failed_files_name_the_repository_and_path_of_their_latest_job(hub: Hub) -> None:
    [first] = push(hub, "org/a", {"x.bin": b"payload"})
    fail(hub, first)
    [second] = push(hub, "org/b", {"y.bin": b"payload"})  # the same bytes, committed again elsewhere
    fail(hub, second)
    [other] = push(hub, "org/c", {"z.bin": b"other bytes"})
    fail(hub, other)
    hub.delete_repo("org/c")
    with hub.session() as s:
        found = {f.sha256: f for f in failed_files(s)}
        b_id = hub.get_repo("org/b").id
    assert len(found) == 2
    latest = next(f for f in found.values() if f.path == "y.bin")
    assert latest.repo_id == b_id
    orphan = next(f for f in found.values() if f.path != "y.bin")
    assert orphan.repo_id is None  # its repository is gone


def test_rebase_candidates_are_found_in_a_fixed_number_of_queries(hub: Hub) -> None:
    base_w = make_weights(1)
    base = to_safetensors(base_w)
    tuned = [to_safetensors(finetune(base_w, seed)) for seed in range(2, 8)]
    card = b"---\nbase_model: org/base\n---\n"
    for i, model in enumerate(tuned):
        ingest_all(hub, push(hub, f"org/tuned-{i}", {"model.safetensors": model, "README.md": card}))
    with hub.session() as s:
        assert rebase_candidates(s) == []  # org/base is not on the hub yet
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": base}))
    with hub.session() as s:
        for row in s.query(FileObject).filter(FileObject.declared_base.is_not(None)):
            row.base_sha256 = None  # as if each fine-tune had been stored before its base arrived
    with counted_queries(hub) as statements, hub.session() as s:
        found = rebase_candidates(s)
    assert len(statements) <= 4, statements
    base_sha = hub.get_entry("org/base", hub.resolve("org/base", "main").oid, "model.safetensors").file.sha256
    assert {c.onto for c in found} == {base_sha}
    assert all(c.onto_path == "model.safetensors" and c.declared_base == "org/base" for c in found)
    assert len(found) >= len(tuned)
