"""Encoding tensors window by window into packed frames, on a real hub (SQLite, local directory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.catalog import plans
from storage.core import casts
from storage.core.dtypes import DTYPES
from storage.core.frames import read_frame_header
from storage.core.layouts import Transposed
from storage.core.segments import Segment
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push
from tests.models import make_weights, to_safetensors
from workers.jobs import encoding

F32, BF16 = DTYPES["F32"], DTYPES["BF16"]


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=16 << 10,
                    pack_target_bytes=64 << 10)  # fmt: skip


def stored_tensors(hub: Hub, data: bytes) -> dict[str, plans.TensorPlan]:
    with hub.session() as s:
        segs = plans.segments(s, hashlib.sha256(data).hexdigest())
        tp = plans.tensor_plans(s, {x.tensor_id for x in segs})
    return {x.name: tp[x.tensor_id] for x in segs if x.name}


def test_a_bf16_tensor_coded_against_an_f32_base_records_the_cast_and_reads_back(hub: Hub) -> None:
    weights = make_weights(3)
    f32 = to_safetensors(weights, "F32")
    ingest_all(hub, push(hub, "org/f32", {"model.safetensors": f32}))
    base = stored_tensors(hub, f32)["embeddings.weight"]
    base_plans = {p.id: p for p in stored_tensors(hub, f32).values()}
    raw = bytearray(casts.predict(weights["embeddings.weight"].tobytes(), F32, BF16))
    raw[::97] = bytes(len(raw[::97]))  # a release that is not exactly the rounding
    tensor_id = hashlib.sha256(raw).hexdigest()
    writer = encoding.ObjectWriter(hub)
    pending = encoding.encode_windows(
        hub, writer, tensor_id=tensor_id, dtype=BF16, shape=(512, 64), nbytes=len(raw),
        read_raw=lambda a, b: bytes(raw[a:b]), read_base=encoding.base_reader(hub, base_plans, base.id, BF16),
        base=base,
    )  # fmt: skip
    (placed,) = writer.finish([pending])
    assert placed.base_id == base.id and placed.chain_depth == base.chain_depth + 1
    # Windows of 4 frames each, the frames covering the tensor in order.
    assert [(f.raw_offset, f.raw_end) for f in placed.frames] == [(a, min(a + (16 << 10), len(raw)))
                                                                  for a in range(0, len(raw), 16 << 10)]  # fmt: skip
    for frame in placed.frames:
        blob = hub.store.get(frame.object_key, frame.object_offset, frame.object_offset + frame.object_length)
        header = read_frame_header(blob)
        assert header.version == 2
        assert header.base_dtype in ("F32", None)  # a window may code plain where that is smaller
    assert hub.reader.read_tensor({**base_plans, tensor_id: placed}, tensor_id, 0, len(raw)) == raw
    assert hub.reader.read_tensor({**base_plans, tensor_id: placed}, tensor_id, 999, 40001) == raw[999:40001]


def test_plan_tensors_skips_what_is_stored_and_repeats(hub: Hub) -> None:
    data = to_safetensors(make_weights(4))
    ingest_all(hub, push(hub, "org/a", {"model.safetensors": data}))
    stored = next(iter(stored_tensors(hub, data).values()))
    segment = Segment(1, 0, 4, "x", F32, (1,))
    jobs = encoding.plan_tensors(hub, [segment, segment, segment], [stored.id, "f" * 64, "f" * 64], None)
    assert [j.tensor_id for j in jobs] == ["f" * 64]


def test_a_base_at_the_chain_bound_hands_over_to_its_own_base() -> None:
    def plan(tid: str, depth: int, base: str | None, dtype: str = "F32", nbytes: int = 16) -> plans.TensorPlan:
        return plans.TensorPlan(tid, dtype, (4,), nbytes, base, depth, ())

    root, mid = plan("r", 0, None), plan("m", 1, "r")
    base = encoding.BaseTensors("sha", 0.5, {"w": mid}, {"r": root, "m": mid})
    segment = Segment(1, 0, 16, "w", F32, (4,))
    assert base.for_segment(segment, max_depth=2) == (mid, 16)
    assert base.for_segment(segment, max_depth=1) == (root, 16)
    assert base.for_segment(Segment(1, 0, 16, "w", F32, (2, 2)), max_depth=4) is None  # other shape
    assert base.for_segment(Segment(1, 0, 8, "w", BF16, (4,)), max_depth=4) == (mid, 8)  # F32 predicts BF16
    # A tensor that grew rows shares the base's: its first 16 bytes are coded against them.
    assert base.for_segment(Segment(1, 0, 24, "w", F32, (6,)), max_depth=4) == (mid, 16)
    assert encoding.predictable(plan("x", 0, None, "BF16", 8), F32, 16) is False
    assert encoding.predictable(root, F32, 16) and encoding.predictable(root, BF16, 8)


def test_a_transposed_pairing_reads_its_base_transposed_and_hands_over_like_any_other() -> None:
    def plan(tid: str, depth: int, base: str | None, shape: tuple[int, ...]) -> plans.TensorPlan:
        return plans.TensorPlan(tid, "F32", shape, 4 * shape[0] * shape[1], base, depth, ())

    root, mid = plan("r", 0, None, (3, 2)), plan("m", 1, "r", (3, 2))
    base = encoding.BaseTensors("sha", 0.5, {"w": mid, "v": mid}, {"r": root, "m": mid}, frozenset({"w"}))
    flipped = Segment(1, 0, 24, "w", F32, (2, 3))
    assert base.for_segment(flipped, max_depth=2) == (mid, 24)
    assert base.for_segment(flipped, max_depth=1) == (root, 24)  # the chain bound hands over to mid's base
    assert base.layout_for(flipped, root) == Transposed(3, 2)
    # Measured in place (not in `transposed`), a [2, 3] tensor shares nothing with a [3, 2] base.
    assert base.for_segment(Segment(1, 0, 24, "v", F32, (2, 3)), max_depth=2) is None
    assert base.layout_for(Segment(1, 0, 24, "v", F32, (3, 2)), mid) is None
    assert base.for_segment(Segment(1, 0, 24, "w", F32, (6, 1)), max_depth=2) is None  # not the transpose
