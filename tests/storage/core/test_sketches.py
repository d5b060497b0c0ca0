"""Sketches: what is sampled, the values kept, and that distance ranks a parent before its kin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.dtypes import DTYPES, DType
from storage.core.formats.base import TensorEntry
from storage.core.sketches import (
    RUN_ELEMENTS,
    SKETCH_RUNS,
    SKETCH_TENSORS,
    SketchPlan,
    SketchSet,
    distances,
    plan_sketch,
    sketch_values,
    value_distances,
    widenable,
)
from tests.models import to_bf16_bits

F32, BF16, F8, I64 = DTYPES["F32"], DTYPES["BF16"], DTYPES["F8_E4M3"], DTYPES["I64"]


def entries(shapes: dict[str, tuple[int, ...]], dtype: DType = F32) -> list[TensorEntry]:
    out, offset = [], 0
    for name, shape in shapes.items():
        nbytes = int(np.prod(shape)) * dtype.itemsize
        out.append(TensorEntry(name, dtype, shape, offset, nbytes))
        offset += nbytes
    return out


def read_values(plan: SketchPlan, tensors: list[TensorEntry], blob: bytes) -> bytes:
    at = {t.name: t.offset for t in tensors}
    return sketch_values(plan, [blob[at[s.name] + s.start : at[s.name] + s.end] for s in plan.spans])


SHAPES = {f"layer.{i}.weight": (64 + i, 32) for i in range(12)} | {"bias": (64,), "step": (1,)}


def test_the_largest_float_tensors_are_sampled_by_element_count_whatever_the_dtype() -> None:
    f32, bf16 = plan_sketch(entries(SHAPES)), plan_sketch(entries(SHAPES, BF16))
    assert f32 is not None and bf16 is not None
    assert f32.layout == bf16.layout, "an F32 model and its BF16 release must compare"
    names = {s.name for s in f32.spans}
    assert names == {f"layer.{i}.weight" for i in range(12 - SKETCH_TENSORS, 12)}
    assert len(f32.spans) == SKETCH_TENSORS * SKETCH_RUNS
    assert all(s.end - s.start == RUN_ELEMENTS * 4 for s in f32.spans)
    assert [(s.start // 4, s.end // 4) for s in f32.spans] == [(s.start // 2, s.end // 2) for s in bf16.spans]


def test_another_architecture_has_another_layout_and_exotic_dtypes_no_sketch() -> None:
    plan = plan_sketch(entries(SHAPES))
    other = plan_sketch(entries({**SHAPES, "layer.11.weight": (80, 32)}))
    assert plan is not None and other is not None and plan.layout != other.layout
    assert plan_sketch(entries(SHAPES, F8)) is None
    assert plan_sketch(entries({"ids": (512,)}, I64)) is None
    assert plan_sketch([]) is None


def test_a_tensor_smaller_than_a_run_is_not_sampled_and_runs_stay_inside_their_tensor() -> None:
    plan = plan_sketch(entries({"tiny": (RUN_ELEMENTS - 1,), "exact": (RUN_ELEMENTS,)}))
    assert plan is not None
    assert {s.name for s in plan.spans} == {"exact"}
    assert all(0 <= s.start < s.end <= RUN_ELEMENTS * 4 for s in plan.spans)


def test_bf16_values_widen_exactly() -> None:
    tensors = entries({"w": (RUN_ELEMENTS * 8,)}, BF16)
    plan = plan_sketch(tensors)
    assert plan is not None
    values = np.random.default_rng(1).standard_normal(RUN_ELEMENTS * 8).astype(np.float32)
    bits = to_bf16_bits(values)
    sketch = np.frombuffer(read_values(plan, tensors, bits.tobytes()), "<f4")
    first = plan.spans[0].start // 2
    assert sketch[:RUN_ELEMENTS].view(np.uint32).tolist() == [int(b) << 16 for b in bits[first : first + RUN_ELEMENTS]]


def test_chunks_of_the_wrong_size_are_refused() -> None:
    plan = plan_sketch(entries({"w": (RUN_ELEMENTS * 8,)}))
    assert plan is not None
    with pytest.raises(ValueError, match="spans"):
        sketch_values(plan, [])
    with pytest.raises(ValueError, match="expected"):
        sketch_values(plan, [b"\0" * 4] * len(plan.spans))


def moved(values: np.ndarray, seed: int, share: float = 0.1) -> np.ndarray:
    """A generation of the synthetic lineage: `share` of the BF16 elements moved by 1-3 ulps."""
    rng = np.random.default_rng(seed)
    out = values.copy()
    pick = rng.random(values.size) < share
    out[pick] = (out[pick].astype(np.int32) + rng.choice([-3, -2, -1, 1, 2, 3], int(pick.sum()))).astype(np.uint16)
    return out


def test_a_parent_is_nearer_than_its_parent_its_siblings_and_strangers() -> None:
    shapes = {f"w{i}": (256, 64) for i in range(SKETCH_TENSORS)}
    tensors = entries(shapes, BF16)
    plan = plan_sketch(tensors)
    assert plan is not None
    rng = np.random.default_rng(0)
    root = to_bf16_bits(rng.standard_normal(256 * 64 * SKETCH_TENSORS).astype(np.float32) * 0.05)
    child = moved(root, 1)
    sibling = moved(root, 2)
    grandchild = moved(child, 3)
    stranger = to_bf16_bits(rng.standard_normal(root.size).astype(np.float32) * 0.05)
    models = {"root": root, "child": child, "sibling": sibling, "grandchild": grandchild, "stranger": stranger}
    sketch = {k: read_values(plan, tensors, v.tobytes()) for k, v in models.items()}
    names = ["root", "sibling", "child", "stranger"]
    apart = distances(sketch["grandchild"], [sketch[n] for n in names])
    assert [names[i] for i in np.argsort(apart)] == ["child", "root", "sibling", "stranger"]
    assert distances(sketch["child"], [sketch["child"]]).tolist() == [0.0]
    assert distances(sketch["child"], []).size == 0


@given(st.binary(min_size=RUN_ELEMENTS * 4 * 8, max_size=RUN_ELEMENTS * 4 * 8))
def test_any_bytes_sketch_to_one_float_per_sampled_element_at_distance_zero_from_themselves(blob: bytes) -> None:
    tensors = entries({"w": (RUN_ELEMENTS * 8,)})
    plan = plan_sketch(tensors)
    assert plan is not None
    sketch = read_values(plan, tensors, blob)
    assert len(sketch) == 4 * RUN_ELEMENTS * SKETCH_RUNS
    assert np.frombuffer(sketch, "<u4").tobytes() == b"".join(blob[s.start : s.end] for s in plan.spans)
    assert distances(sketch, [sketch]).tolist() == [0.0]


def test_value_distances_rank_a_tensors_own_f32_base_nearest_among_its_shape() -> None:
    rng = np.random.default_rng(3)
    bases = [(rng.standard_normal(256) * 0.05).astype(np.float32) for _ in range(24)]
    target = (bases[17] * (1 + 1e-3 * rng.standard_normal(256))).astype(np.float16)  # fine-tuned, F16
    far = value_distances(target.tobytes(), "F16", [(b.tobytes(), "F32") for b in bases])
    assert int(np.argmin(far)) == 17
    assert far[17] < 0.7 * np.median(far)
    assert widenable("BF16") and not widenable("I8")



def _moved(values: np.ndarray, seed: int) -> np.ndarray:
    """A generation as bench/scale_lineage.py models one: 10% of the elements moved 1-3 BF16 ulps."""
    rng = np.random.default_rng(seed)
    bits = values.view(np.int32).copy()
    pick = np.flatnonzero(rng.random(bits.size) < 0.1)
    bits[pick] += rng.choice([-3, -2, -1, 1, 2, 3], pick.size).astype(np.int32) << 16
    return bits.view(np.float32)


def test_the_centre_of_a_lineage_is_its_root_though_the_root_is_not_among_them() -> None:
    root = (np.random.default_rng(7).standard_normal(1536) * 0.05).astype("<f4")
    children = [_moved(root, 100 + k) for k in range(12)]
    lineage = children + [_moved(children[k % 3], 200 + k) for k in range(12)]
    members = SketchSet([v.tobytes() for v in lineage])
    centre = members.centre(np.arange(len(lineage), dtype=np.intp))
    assert distances(centre, [root.tobytes()])[0] < 0.3, "the root's values, elementwise"
    apart = members.to(centre)
    assert apart[:12].max() + 0.5 < apart[12:].min(), "children sit nearer the centre than grandchildren"
    one = distances(lineage[12].tobytes(), [children[0].tobytes()])
    assert list(members.between(np.array([12]), np.array([0]))) == list(one)


@given(st.lists(st.floats(width=32, allow_nan=True, allow_subnormal=True), min_size=3, max_size=3))
def test_a_centre_is_made_of_the_members_own_values(values: list[float]) -> None:
    """Each element of the centre is one member's (NaN payloads, denormals and -0.0 included; -0.0 and
    0.0 are one point of the ordering, so either may stand for both)."""
    rows = [np.array([v, -v, 0.0], "<f4").tobytes() for v in values]
    centre = np.frombuffer(SketchSet(rows).centre(np.arange(3, dtype=np.intp)), "<u4")
    for k, bits in enumerate(centre.tolist()):
        options = {int(np.frombuffer(r, "<u4")[k]) for r in rows}
        assert bits in options or (bits & 0x7FFFFFFF == 0 and any(o & 0x7FFFFFFF == 0 for o in options))
