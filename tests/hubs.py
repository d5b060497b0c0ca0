"""Building a real Hub for tests, on each catalog and store backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog.db import upgrade
from storage.core.formats.base import FileLayout, ReadRange
from storage.objectstore import ObjectStore
from storage.settings import load_settings
from workers.jobs.ingest import run_ingest

BACKENDS = ["sqlite-local", "postgresql-s3"]


def backend_hub(request: pytest.FixtureRequest, tmp_path: Path, **overrides: object) -> Hub:
    """`make_hub` on the backend a fixture parametrised with BACKENDS names: a SQLite catalog with the
    local store, or PostgreSQL with the S3 server."""
    if request.param == "sqlite-local":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        store: ObjectStore = request.getfixturevalue("local_store")
    else:
        url = request.getfixturevalue("pg_database_url")
        store = request.getfixturevalue("s3_store")
    return make_hub(tmp_path, url, store, **overrides)


def make_hub(tmp_path: Path, database_url: str, store: ObjectStore, **overrides: object) -> Hub:
    """A hub with no queue: tests run ingest jobs themselves, in the order they choose."""
    settings = load_settings(data_dir=tmp_path, database_url=database_url, **overrides)
    upgrade(settings.resolved_database_url)
    return Hub(settings, store=store)


def push(hub: Hub, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
         declared_base: str | None = None) -> list[int]:
    """Create the repository if needed, upload and commit `files`; returns the queued job ids.

    A new repository's initial commit (the Hub's .gitattributes) is ingested here, so the jobs returned
    are those of `files` alone."""
    created_before = set(_job_ids(hub))
    hub.create_repo(repo_id, exist_ok=True)
    ingest_all(hub, sorted(set(_job_ids(hub)) - created_before))
    additions = []
    for path, data in files.items():
        info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
        additions.append(FileAddition(path, info.sha256))
    before = set(_job_ids(hub))
    hub.commit(repo_id, branch, message=f"push {sorted(files)}", additions=additions, declared_base=declared_base)
    return sorted(set(_job_ids(hub)) - before)


def _job_ids(hub: Hub) -> list[int]:
    from storage.catalog import jobs

    with hub.session() as s:
        return jobs.unfinished_jobs(s)


def ingest_all(hub: Hub, job_ids: list[int]) -> None:
    for job_id in job_ids:
        run_ingest(hub, job_id)


def read_all(hub: Hub, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(hub.read(sha256, start, end))


def ingest_with_layout(hub: Hub, job_id: int, layout: Callable[[ReadRange, int], FileLayout]) -> int:
    """Run ingest job `job_id` as ingest does, but cutting the file with `layout` (e.g. the layout an
    older version of a format produced) instead of its format's; returns the encoded bytes written."""
    from storage.catalog import files, jobs
    from storage.core.segments import hash_segments
    from workers.jobs import encoding, lineage

    with hub.session() as s:
        job = jobs.start_job(s, job_id)
        assert job is not None
        snap = files.snapshot(s, job.file_sha256)
    assert snap.staging_key is not None
    key = snap.staging_key
    cut = layout(lambda a, b: hub.store.get(key, a, b), snap.size)
    digests = hash_segments(hub.store.iter_range(key, 0, snap.size), cut.segments, snap.size, snap.sha256)
    written = encoding.encode_and_write(hub, key, encoding.plan_tensors(hub, cut.segments, digests, None))
    with hub.session() as s:
        lineage.commit_file(s, snap.sha256, cut.segments, digests, written, layout=cut, base=None)
        jobs.finish_job(s, job_id)
    hub.store.delete(key)
    return sum(f.object_length for t in written.tensors for f in t.frames)
