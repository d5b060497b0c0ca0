"""Opaque files that change a little between uploads store only the chunks that changed."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.chunked_blobs import jsonl, records
from storage.app.hub import Hub
from storage.catalog import plans
from storage.catalog.accounting import storage_report
from storage.catalog.models import StoreObject
from storage.core.formats.blob import CHUNKED_FROM
from tests.hubs import BACKENDS, backend_hub, ingest_all, push, read_all


@pytest.fixture(params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Hub:
    return backend_hub(request, tmp_path)


def _stored_bytes(hub: Hub) -> int:
    with hub.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(StoreObject.size), 0))) or 0)


def test_a_dataset_shard_with_edited_and_appended_rows_stores_only_what_changed(hub: Hub) -> None:
    rng = random.Random(11)
    rows = records(rng, 60_000)
    first = jsonl(rows)
    assert len(first) > 4 * CHUNKED_FROM
    # The next version: a run of 1% of the rows relabelled, 600 rows removed further on, 1,500 appended.
    edited = [dict(r) for r in rows]
    for r in edited[9_000:9_600]:
        r["label"] = -1
    del edited[36_000:36_600]
    second = jsonl(edited + records(rng, 1_500, start=60_000))

    ingest_all(hub, push(hub, "org/data", {"train.jsonl": first}))
    after_first = _stored_bytes(hub)
    ingest_all(hub, push(hub, "org/data", {"train.jsonl": second}))
    added = _stored_bytes(hub) - after_first

    # Alone, the second version would cost about what the first did; chunked, only the chunks around the
    # three edits (and the appended rows) are new.
    print(f"second version added {added} bytes, {added / after_first:.3f} of the first's {after_first}")
    assert added < 0.2 * after_first, (added, after_first)
    for data in (first, second):
        sha = hashlib.sha256(data).hexdigest()
        assert read_all(hub, sha) == data
        with hub.session() as s:
            assert len(plans.segments(s, sha)) > 1
    with hub.session() as s:
        assert storage_report(s)["savings"]["chunk_dedup"] > 0


def test_an_appended_log_stores_the_old_part_once(hub: Hub) -> None:
    rng = random.Random(5)
    old = jsonl(records(rng, 15_000))
    new = old + jsonl(records(rng, 1_000))
    ingest_all(hub, push(hub, "org/logs", {"log.jsonl": old}))
    after_old = _stored_bytes(hub)
    ingest_all(hub, push(hub, "org/logs", {"log.jsonl": new}))
    added = _stored_bytes(hub) - after_old
    # Only the last chunk before the append point and the appended rows are new.
    assert added < 0.25 * after_old, (added, after_old)
    assert read_all(hub, hashlib.sha256(new).hexdigest()) == new
    with hub.session() as s:
        report = storage_report(s)
    assert report["savings"]["chunk_dedup"] >= len(old) - 2 * (1 << 20)


def test_ranges_across_chunk_boundaries_read_back_exactly(hub: Hub) -> None:
    data = jsonl(records(random.Random(2), 12_000))
    sha = hashlib.sha256(data).hexdigest()
    ingest_all(hub, push(hub, "org/ranges", {"part.jsonl": data}))
    with hub.session() as s:
        segments = plans.segments(s, sha)
    rng = random.Random(3)
    edges = [seg.offset for seg in segments[1:]]
    for edge in rng.sample(edges, min(5, len(edges))):
        start, end = edge - rng.randint(1, 5000), edge + rng.randint(1, 5000)
        assert read_all(hub, sha, start, end) == data[start:end]
