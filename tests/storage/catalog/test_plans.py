"""Read plans from the catalog: a range plan holds exactly the segments its range touches (found by the
(file, offset) index, whatever the segment count), bisection finds the same segments and frames as a
scan, and a re-encode bumps the plan version of every file reading through the tensor."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.app.hub import Hub
from storage.catalog import plans
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import to_safetensors

# Empty tensors make zero-length segments, which share their offset with the next segment.
SIZES = [0, 5, 1, 0, 0, 300, 7, 0, 2048, 3, 0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def many() -> bytes:
    rng = np.random.default_rng(7)
    weights = {f"t{i:03d}": rng.standard_normal(SIZES[i % len(SIZES)]).astype(np.float32) for i in range(120)}
    return to_safetensors(weights, "BF16")


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore, many: bytes) -> Iterator[Hub]:
    hub = make_hub(tmp_path, database_url, local_store, frame_bytes=1024)
    ingest_all(hub, push(hub, "org/many", {"model.safetensors": many}))
    yield hub
    hub.engine.dispose()


def scanned(segments: tuple[plans.SegmentPlan, ...], start: int, end: int) -> list[plans.SegmentPlan]:
    return [s for s in segments if s.length and s.offset < end and s.end > start]


def test_range_plans_hold_exactly_the_segments_their_range_touches(hub: Hub, many: bytes) -> None:
    with hub.session() as s:
        head = plans.file_head(s, sha(many))
        assert head is not None
        whole = plans.file_plan(s, sha(many))
        assert whole is not None
        assert any(seg.length == 0 for seg in whole.segments)
        ranges = [(0, 1), (0, len(many)), (len(many) - 1, len(many)), (9, 9)]
        ranges += [(seg.offset, seg.offset) for seg in whole.segments]
        ranges += [(seg.offset, seg.end + 1) for seg in whole.segments]
        for start, end in ranges:
            part = plans.range_plan(s, head, start, min(end, len(many)))
            expected = scanned(whole.segments, start, end)
            assert part.segments_in(start, end) == expected == whole.segments_in(start, end)
            # Nothing else is loaded: the segments starting inside the range, and the one holding `start`.
            inside = [seg for seg in whole.segments if start < seg.offset < end]
            assert len(part.segments) <= len(inside) + 1
            assert set(part.tensors) >= {seg.tensor_id for seg in expected}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_range_reads_back_through_a_range_plan_and_through_the_cached_plan(data: st.DataObject) -> None:
    hub, many = _shared()
    start = data.draw(st.integers(0, len(many)))
    end = data.draw(st.integers(start, len(many)))
    hub.reader.plans = type(hub.reader.plans)(hub.reader.plans.max_entries, hub.reader.plans.max_bytes)
    assert read_all(hub, sha(many), start, end) == many[start:end]  # no cached plan: the range plan
    hub.reader.wait_for_plans()  # ... and the whole plan built behind it
    assert len(hub.reader.plans) == 1
    assert read_all(hub, sha(many)) == many
    assert read_all(hub, sha(many), start, end) == many[start:end]  # the cached whole plan
    assert len(hub.reader.plans) == 1


_SHARED: list[tuple[Hub, bytes]] = []


def _shared() -> tuple[Hub, bytes]:
    if not _SHARED:
        import tempfile

        from storage.objectstore import LocalObjectStore

        directory = Path(tempfile.mkdtemp(prefix="deltahub-plans-"))
        rng = np.random.default_rng(8)
        weights = {f"t{i:03d}": rng.standard_normal(SIZES[i % len(SIZES)] * 3).astype(np.float32) for i in range(60)}
        data = to_safetensors(weights, "BF16")
        hub = make_hub(directory, f"sqlite:///{directory / 'c.sqlite3'}", LocalObjectStore(directory / "o"),
                       frame_bytes=512)  # fmt: skip
        ingest_all(hub, push(hub, "org/many", {"model.safetensors": data}))
        _SHARED.append((hub, data))
    return _SHARED[0]


def test_frames_covering_finds_what_a_scan_finds(hub: Hub, many: bytes) -> None:
    with hub.session() as s:
        whole = plans.file_plan(s, sha(many))
    assert whole is not None
    tensor = max(whole.tensors.values(), key=lambda t: len(t.frames))
    assert len(tensor.frames) > 3
    for start in range(0, tensor.nbytes + 1, 97):
        for end in (start, start + 1, start + 1024, tensor.nbytes):
            scan = [i for i, f in enumerate(tensor.frames) if f.raw_offset < end and f.raw_end > start]
            assert list(plans.frames_covering(tensor, start, end)) == scan


def test_bumping_a_tensor_gives_every_file_holding_it_a_new_plan_version(hub: Hub, many: bytes) -> None:
    other = to_safetensors({"t000": np.zeros(0, np.float32), "x": np.ones(9, np.float32)}, "BF16")
    ingest_all(hub, push(hub, "org/other", {"model.safetensors": other}))
    with hub.session() as s:
        shared = plans.segments(s, sha(many))[1].tensor_id  # the empty tensor: both files hold it
        assert shared in {seg.tensor_id for seg in plans.segments(s, sha(other))}
        before = {f: plans.file_head(s, f) for f in (sha(many), sha(other))}
        plans.bump_plan_versions(s, [shared])
        after = {f: plans.file_head(s, f) for f in (sha(many), sha(other))}
    for f, head in before.items():
        assert head is not None and after[f] == plans.FileHead(f, head.size, head.stored_at, head.plan_version + 1)
