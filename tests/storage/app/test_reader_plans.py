"""Read plans cached in process (storage/app/plancache.py): a warm read loads no plan, and no change
to a file's encoding is ever read through a stale plan, on SQLite and PostgreSQL.

The stale-plan tests free the old encoding's objects (GC, grace 0) and empty the decoded-frame cache
before reading again: a plan cached under a key that missed the change would fetch objects that are gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from storage.app.hub import Hub
from storage.app.plancache import PlanCache
from storage.app.reader import FrameCache
from storage.catalog import plans
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.gc import collect_garbage


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Iterator[Hub]:
    hub = make_hub(tmp_path, database_url, local_store, frame_bytes=16 << 10, pack_target_bytes=64 << 10)
    yield hub
    hub.engine.dispose()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def forget_decoded_frames(hub: Hub) -> None:
    hub.reader.cache = FrameCache(hub.reader.cache.max_bytes)


def statements(hub: Hub) -> list[str]:
    """Every SQL statement the hub's engine runs from now on (appended as they run)."""
    seen: list[str] = []
    event.listen(hub.engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_a_warm_read_loads_no_plan(hub: Hub) -> None:
    data = to_safetensors(make_weights(1), "BF16")
    ingest_all(hub, push(hub, "org/model", {"model.safetensors": data}))
    assert read_all(hub, sha(data)) == data
    seen = statements(hub)
    assert read_all(hub, sha(data)) == data
    assert read_all(hub, sha(data), 100, 5000) == data[100:5000]
    assert seen and not [q for q in seen if "file_segments" in q or "frames" in q], seen


def test_a_rebase_is_never_read_through_the_plan_cached_before_it(hub: Hub) -> None:
    base_w = make_weights(2)
    base, tuned = to_safetensors(base_w, "BF16"), to_safetensors(finetune(base_w, 3), "BF16")
    config = b'{"_name_or_path": "org/base"}'
    ingest_all(hub, push(hub, "org/tuned", {"model.safetensors": tuned, "config.json": config}))
    assert read_all(hub, sha(tuned)) == tuned  # its plain encoding's plan is now cached
    with hub.session() as s:
        before = plans.file_head(s, sha(tuned))
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": base}))  # rebases the fine-tune onto it
    with hub.session() as s:
        after = plans.file_head(s, sha(tuned))
        rebased = plans.file_plan(s, sha(tuned))
    assert rebased is not None and any(t.base_id for t in rebased.tensors.values()), "nothing was rebased"
    assert before is not None and after is not None
    assert (after.sha256, after.stored_at) == (before.sha256, before.stored_at)
    assert after.plan_version > before.plan_version
    assert collect_garbage(hub, grace_seconds=0).repacked > 0  # the plain frames' objects are gone
    forget_decoded_frames(hub)
    assert read_all(hub, sha(tuned)) == tuned
    assert read_all(hub, sha(tuned), 1000, 40_000) == tuned[1000:40_000]
    assert read_all(hub, sha(base)) == base


def test_a_file_stored_again_after_gc_is_never_read_through_its_old_plan(hub: Hub) -> None:
    data = to_safetensors(make_weights(4), "BF16")
    ingest_all(hub, push(hub, "org/gone", {"model.safetensors": data}))
    assert read_all(hub, sha(data)) == data
    with hub.session() as s:
        first = plans.file_head(s, sha(data))
    hub.delete_repo("org/gone")
    collect_garbage(hub, grace_seconds=0)  # the file, its tensors and their objects
    with hub.session() as s:
        assert plans.file_head(s, sha(data)) is None
    ingest_all(hub, push(hub, "org/back", {"model.safetensors": data}))
    with hub.session() as s:
        second = plans.file_head(s, sha(data))
    forget_decoded_frames(hub)
    assert read_all(hub, sha(data)) == data
    assert first is not None and second is not None
    assert second.plan_version == first.plan_version  # the version alone cannot tell the two lives apart
    assert second.plan_key != first.plan_key


def test_plan_cache_evicts_least_recently_used_by_entries_and_bytes() -> None:
    def plan(name: str, segments: int) -> plans.FilePlan:
        segs = tuple(plans.SegmentPlan(i, i, 1, "t", None) for i in range(segments))
        return plans.FilePlan(name, segments, segs, {})

    cache = PlanCache(max_entries=2, max_bytes=10_000)
    a, b, c = plan("a", 1), plan("b", 1), plan("c", 1)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("c", c)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (a, None, c)
    big = plan("big", 100)
    assert big.weight > 10_000
    cache.put("big", big)
    assert cache.get("big") is None and len(cache) == 2
    cache.put("a", a)  # the same key again counts once
    assert cache.bytes == a.weight + c.weight
    small = PlanCache(max_entries=10, max_bytes=a.weight * 2)
    for key in "xyz":
        small.put(key, plan(key, 1))
    assert len(small) == 2 and small.get("x") is None
