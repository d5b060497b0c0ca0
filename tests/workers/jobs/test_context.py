"""Jobs take a JobContext; the concrete Hub satisfies it structurally (checked here and by mypy)."""

from __future__ import annotations

import inspect
from pathlib import Path

from storage.app.hub import Hub
from storage.objectstore import ObjectStore
from tests.hubs import make_hub
from workers.jobs import encoding, gc, ingest, lineage, verify
from workers.jobs.context import JobContext


def as_context(hub: Hub) -> JobContext:
    return hub  # mypy refuses this line if Hub stops satisfying the Protocol


def test_hub_is_a_job_context(tmp_path: Path, local_store: ObjectStore) -> None:
    ctx = as_context(make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store))
    assert ctx.settings.frame_bytes > 0 and ctx.store is local_store and ctx.reader is not None
    with ctx.session() as s:
        assert s is not None


def test_every_job_is_typed_against_the_context_not_the_hub() -> None:
    for module in (encoding, gc, ingest, lineage, verify):
        source = inspect.getsource(module)
        assert "storage.app.hub" not in source, module.__name__
