"""Model sketches: a few KB of element values per weight file, to find its nearest relatives cheaply.

A sketch is the values of a fixed set of elements (runs at fixed fractions of the largest floating-point
tensors), widened to float32. Two files whose tensors have the same names and shapes have sketches of the
same *layout* (a digest of what was sampled), and their distance is the mean over sampled elements of
log2(1 + the distance between the two values in float32 ulps): 0 for equal elements, ~16 for one BF16
ulp, so a fine-tune that moved 10% of its elements sits near 1.7 from its parent and near 3.2 from its
grandparent or a sibling. The sketch only ranks candidates; the base is still chosen by measuring
encoded size (storage/core/families.py), so a sketch can never affect what is stored, only against what.

Pure: callers read the spans and hand the bytes in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from storage.core.formats.base import TensorEntry

# Format of the layout digest and of the stored values; a new sampling rule is a new version (sketches
# of different versions never compare: their layouts differ).
SKETCH_VERSION = 1
# 8 tensors × 4 runs × 48 elements = 1,536 float32 values (6 KiB): on the synthetic MiniLM lineage the
# parent (10% of elements moved) and the grandparent/siblings (~19%) are 150 vs ~290 differing elements
# apart, far beyond sampling noise (±12).
SKETCH_TENSORS = 8
SKETCH_RUNS = 4
RUN_ELEMENTS = 48
# Dtypes a sketch widens to float32 exactly (F64 rounds); a model whose sampled tensors are of another
# dtype has no sketch and is found by the catalog's other candidate queries.
_WIDENED = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True, slots=True)
class SketchSpan:
    """Bytes [start, end) of tensor `name` (offsets within the tensor), of dtype `dtype`."""

    name: str
    dtype: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SketchPlan:
    layout: str  # hex digest: equal layouts sample the same elements of the same tensors
    spans: tuple[SketchSpan, ...]


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def plan_sketch(tensors: Sequence[TensorEntry]) -> SketchPlan | None:
    """What to sample of a file with these tensors: the `SKETCH_TENSORS` floating-point tensors with the
    most elements (by element count, so an F32 model and its BF16 release sample the same elements), runs
    at fixed fractions of each. None when the file has no tensor to sample or one of another dtype."""
    floats = [t for t in tensors if t.dtype.kind == "float" and _numel(t.shape) >= RUN_ELEMENTS]
    chosen = sorted(floats, key=lambda t: (-_numel(t.shape), t.name))[:SKETCH_TENSORS]
    if not chosen or any(t.dtype.name not in _WIDENED for t in chosen):
        return None
    spans = []
    for t in chosen:
        numel, size = _numel(t.shape), t.dtype.itemsize
        for k in range(SKETCH_RUNS):
            first = min(numel * (2 * k + 1) // (2 * SKETCH_RUNS), numel - RUN_ELEMENTS)
            spans.append(SketchSpan(t.name, t.dtype.name, first * size, (first + RUN_ELEMENTS) * size))
    described = [SKETCH_VERSION, SKETCH_RUNS, RUN_ELEMENTS, [[t.name, list(t.shape)] for t in chosen]]
    layout = hashlib.sha256(json.dumps(described, separators=(",", ":")).encode()).hexdigest()
    return SketchPlan(layout, tuple(spans))


def _widen(raw: bytes, dtype: str) -> npt.NDArray[np.float32]:
    if dtype == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    kinds = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
    return np.frombuffer(raw, kinds[dtype]).astype(np.float32)


def sketch_values(plan: SketchPlan, chunks: Sequence[bytes]) -> bytes:
    """The sketch: the sampled elements as little-endian float32, from the bytes of each span in order."""
    if len(chunks) != len(plan.spans):
        raise ValueError(f"{len(chunks)} chunks for {len(plan.spans)} spans")
    parts = []
    for span, raw in zip(plan.spans, chunks, strict=True):
        if len(raw) != span.end - span.start:
            raise ValueError(f"span of {span.name} is {len(raw)} bytes, expected {span.end - span.start}")
        parts.append(_widen(raw, span.dtype))
    return np.concatenate(parts).astype("<f4").tobytes()


def value_distances(raw: bytes, dtype: str, others: Sequence[tuple[bytes, str]]) -> npt.NDArray[np.float64]:
    """Distance, as between sketches, from the elements `raw` (of `dtype`) to each of `others`: the same
    elements of other tensors, each of its own dtype (an F32 base of an F16 tensor is compared as it is,
    so the cast's rounding counts as a small distance). Used to pair renamed tensors by content."""
    if not others:
        return np.zeros(0)
    return distances(_widened(raw, dtype), [_widened(b, d) for b, d in others])


def _widened(raw: bytes, dtype: str) -> bytes:
    """Elements of `dtype` as a sketch holds them: little-endian float32."""
    return _widen(raw, dtype).astype("<f4").tobytes()


def widenable(dtype: str) -> bool:
    """Whether elements of `dtype` can be compared by value (widened to float32)."""
    return dtype in _WIDENED


def _ordered(values: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """float32 bit patterns as integers in the order of the values (adjacent floats differ by 1)."""
    bits = values.view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def distances(sketch: bytes, others: Sequence[bytes]) -> npt.NDArray[np.float64]:
    """Distance from `sketch` to each of `others` (sketches of the same layout); one vectorised pass, so
    a family of 1,000 members costs a few milliseconds."""
    if not others:
        return np.zeros(0)
    return SketchSet(others).to(sketch)


def _log_mean(apart: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    # float32 is plenty for a ranking and halves the pass over a 1,000-member family.
    return np.asarray(np.log2(np.abs(apart).astype(np.float32) + np.float32(1)).mean(axis=-1, dtype=np.float64),
                      dtype=np.float64)  # fmt: skip


class SketchSet:
    """Sketches of one layout held as one matrix, for many distance queries among them (a family's
    members to the newcomer, to their bases, to its centre) without converting each sketch again."""

    def __init__(self, sketches: Sequence[bytes]) -> None:
        values = np.frombuffer(b"".join(sketches), "<f4")
        self._rows = _ordered(values.reshape(len(sketches), -1) if sketches else values.reshape(0, 0))

    def __len__(self) -> int:
        return len(self._rows)

    def to(self, sketch: bytes) -> npt.NDArray[np.float64]:
        """Distance from `sketch` to each member."""
        if not len(self._rows):
            return np.zeros(0)
        return _log_mean(self._rows - _ordered(np.frombuffer(sketch, "<f4")))

    def between(self, a: npt.NDArray[np.intp], b: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """Distance from member a[k] to member b[k], for each k."""
        if not len(a):
            return np.zeros(0)
        return _log_mean(self._rows[a] - self._rows[b])

    def centre(self, members: npt.NDArray[np.intp], extra: bytes | None = None) -> bytes:
        """The elementwise (lower) median of the members' sketches and `extra`: for a lineage, the values
        most members share, i.e. those of the model they descend from, whether or not it is stored (the
        element moves of each fine-tune are its own, so a median of its descendants undoes them)."""
        stacked = self._rows[members]
        if extra is not None:
            stacked = np.vstack([stacked, _ordered(np.frombuffer(extra, "<f4"))[None, :]])
        if not len(stacked):
            raise ValueError("the centre of no sketches")
        middle = np.partition(stacked, (len(stacked) - 1) // 2, axis=0)[(len(stacked) - 1) // 2]
        return _unordered(middle).tobytes()


def _unordered(ordered: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """Inverse of `_ordered`: little-endian float32 values."""
    bits = np.where(ordered < 0, (-ordered) | 0x80000000, ordered).astype(np.uint32)
    return bits.view("<f4")
