"""Families and bases: which stored model a new one is closest to, measured, never assumed.

Pure functions: the ingest job gathers the bytes (sampled tensor slices of the new file and of each
candidate) and these functions score them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.core import casts
from storage.core.dtypes import DType
from storage.core.formats.base import TensorEntry
from storage.core.frames import encode_tensor
from storage.core.layouts import transposed_of

# A candidate base is used only when the delta is clearly smaller than coding the model alone; on the
# dev corpus related pairs score 0.2-0.7 and unrelated runs score 1.0 (the chooser falls back to plain).
MAX_BASE_SCORE = 0.9
# Bytes sampled per tensor and tensors sampled per model when scoring: ~2 MiB read per candidate.
SAMPLE_BYTES = 64 << 10
SAMPLE_TENSORS = 32


def fingerprint(tensors: Sequence[TensorEntry]) -> str:
    """Architecture fingerprint: SHA-256 over the sorted (name, shape) of the floating-point tensors.

    The dtype is left out on purpose: an F32 checkpoint and its BF16 release are one family, and the
    BF16 tensors are predicted from the F32 ones (storage/core/casts.py). Integer tensors are left out too:
    they are buffers (position ids, batch counters) that one export keeps and another drops, as the
    MiniLM base and its fine-tune in the dev corpus do.
    """
    items = sorted((t.name, list(t.shape)) for t in tensors if t.dtype.kind in ("float", "complex"))
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SampleSpan:
    name: str
    start: int
    end: int


def sample_spans(tensors: Sequence[TensorEntry]) -> list[SampleSpan]:
    """Deterministic slices to compare: the largest tensors, a slice from the middle of each.

    Middles avoid padding rows at the ends of embeddings; the largest tensors carry most of the bytes a
    base would save.
    """
    big = sorted((t for t in tensors if t.nbytes > 0 and t.dtype.byte_aligned), key=lambda t: (-t.nbytes, t.name))
    spans = []
    for t in big[:SAMPLE_TENSORS]:
        width = min(SAMPLE_BYTES, t.nbytes)
        width -= width % t.dtype.itemsize
        if width == 0:
            continue
        middle = (t.nbytes // 2) - (t.nbytes // 2) % t.dtype.itemsize
        start = max(0, min(middle, t.nbytes - width))
        spans.append(SampleSpan(t.name, start, start + width))
    return spans


def encoded_size(raw: bytes, dtype: DType, base: bytes | None, base_dtype: DType | None = None) -> int:
    encoded = encode_tensor(raw, dtype, base, base_dtype=base_dtype, verify=False)
    return sum(len(frame) for frame in encoded.frames)


def base_score(pairs: Sequence[tuple[bytes, bytes, DType, DType]]) -> float:
    """Encoded size against the base ÷ encoded size alone, over sampled (target, base, dtype, base dtype)
    slices; the base slice is the base's own bytes for the target's elements (cast-predicted in coding).

    1.0 means the base does not help (unrelated); smaller is closer.
    """
    alone = sum(encoded_size(t, d, None) for t, _, d, _ in pairs)
    if alone == 0:
        return 1.0
    with_base = sum(encoded_size(t, d, b, bd) for t, b, d, bd in pairs)
    return with_base / alone


# Tensor matching at the model level: which base tensor each tensor of a new file is coded against.
# Leading name components tried as prefixes to strip (`bert.`, `model.`, `base_model.model.`): at most
# this many components deep, the most frequent few on each side.
MAX_PREFIX_COMPONENTS = 2
MAX_PREFIXES = 8
# Same-shape base tensors offered per unmatched tensor: a shape shared by more is too common to pair.
# Converters that rename every tensor (llama.cpp's `blk.0.attn_q.weight`) leave dozens of one shape (24
# of 384x384 in MiniLM): those are ranked by sampled values (`rank_span`, storage/core/sketches.py
# `value_distances`) and only the nearest few measured. Tensors of a dtype that cannot be compared by
# value are measured only when at most MAX_UNRANKED_CANDIDATES share the shape.
MAX_SHAPE_CANDIDATES = 256
MEASURED_SHAPE_CANDIDATES = 2
MAX_UNRANKED_CANDIDATES = 4
RANK_ELEMENTS = 256


@dataclass(frozen=True, slots=True)
class TensorShape:
    """What matching needs of a tensor: its name, dtype and shape (from any format's parse, or the catalog)."""

    name: str
    dtype: DType
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        count = 1
        for n in self.shape:
            count *= n
        return self.dtype.nbytes(count) or 0


@dataclass(frozen=True, slots=True)
class TensorMatch:
    """Target tensor `target` is coded against base tensor `base` on its first `shared_bytes` bytes
    (all of them unless the leading dimension grew: the new rows are coded alone)."""

    target: str
    base: str
    how: str  # "name" | "renamed" | "grown" | "shape"
    shared_bytes: int


def shared_bytes(target: TensorShape, base: TensorShape) -> int:
    """Target bytes whose elements the base holds at the same place: all of them for an equal shape; the
    shared leading rows when only the first dimension differs (row-major: rows are a prefix); else 0.
    The base must be of a dtype that predicts the target's (equal, or a wider float cast)."""
    if not casts.can_predict(base.dtype, target.dtype) or not target.dtype.byte_aligned:
        return 0
    if target.shape == base.shape:
        return target.nbytes
    if len(target.shape) != len(base.shape) or not target.shape or target.shape[1:] != base.shape[1:]:
        return 0
    row = target.nbytes // target.shape[0] if target.shape[0] else 0
    return min(target.shape[0], base.shape[0]) * row


def rank_span(t: TensorShape) -> tuple[int, int]:
    """Bytes [a, b) of a tensor read to rank its same-shape candidates: RANK_ELEMENTS from its middle
    (every candidate has the same shape, so the same span of each holds the same elements)."""
    size = t.dtype.itemsize
    count = t.nbytes // size
    n = min(RANK_ELEMENTS, count)
    first = (count - n) // 2
    return first * size, (first + n) * size


def _prefixes(names: Sequence[str]) -> list[str]:
    counts: dict[str, int] = {}
    for name in names:
        parts = name.split(".")
        for k in range(1, min(MAX_PREFIX_COMPONENTS, len(parts) - 1) + 1):
            prefix = ".".join(parts[:k]) + "."
            counts[prefix] = counts.get(prefix, 0) + 1
    ranked = sorted(counts, key=lambda p: (-counts[p], p))[:MAX_PREFIXES]
    return ["", *ranked]


def _renamed(targets: dict[str, TensorShape], bases: dict[str, TensorShape]) -> tuple[str, str, dict[str, str]]:
    """The prefix rule (strip `pt` from target names, put `pb` in front) matching the most tensors of a
    compatible shape, and the pairs it matches. Derived, not listed: whatever leading components the
    two models differ by (`bert.`, `model.`, `base_model.model.`, `transformer.`), either side."""
    best: tuple[int, str, str, dict[str, str]] = (0, "", "", {})
    for pt in _prefixes(list(targets)):
        for pb in _prefixes(list(bases)):
            if pt == pb:
                continue
            pairs = {}
            for name, t in targets.items():
                if not name.startswith(pt):
                    continue
                other = pb + name[len(pt) :]
                b = bases.get(other)
                if b is not None and shared_bytes(t, b) > 0:
                    pairs[name] = other
            # Most matches win; ties go to the shorter rule (fewer components stripped and added).
            if len(pairs) > best[0] or (len(pairs) == best[0] > 0 and len(pt) + len(pb) < len(best[1]) + len(best[2])):
                best = (len(pairs), pt, pb, pairs)
    return best[1], best[2], best[3]


def match_tensors(
    targets: Sequence[TensorShape], bases: Sequence[TensorShape]
) -> tuple[list[TensorMatch], dict[str, list[str]]]:
    """Pair a file's tensors with a base model's (all its shards): exact names first, then names under
    the prefix rule that matches most, then, for what is left, base tensors of the same shape, returned
    as candidates for the caller to measure (closeness decides, never the shape alone).

    A pair whose leading dimension differs (tokens added: more embedding rows) shares its common rows.
    Returns (matches, {target name: same-shape base names to measure}).
    """
    target_by = {t.name: t for t in targets if t.nbytes > 0}
    base_by = {b.name: b for b in bases}
    matches: list[TensorMatch] = []
    used: set[str] = set()
    left: dict[str, TensorShape] = {}
    for name, t in target_by.items():
        b = base_by.get(name)
        shared = shared_bytes(t, b) if b is not None else 0
        if b is not None and shared > 0:
            matches.append(TensorMatch(name, name, "name" if shared == t.nbytes else "grown", shared))
            used.add(name)
        else:
            left[name] = t
    if left:
        _, _, pairs = _renamed(left, {k: v for k, v in base_by.items() if k not in used})
        for name, other in sorted(pairs.items()):
            t, b = left.pop(name), base_by[other]
            shared = shared_bytes(t, b)
            matches.append(TensorMatch(name, other, "renamed" if shared == t.nbytes else "grown", shared))
            used.add(other)
    unused = [b for b in base_by.values() if b.name not in used]
    candidates = _shape_candidates(sorted(left.values(), key=lambda t: t.name), unused, lambda t: t.shape,
                                   lambda t, b: shared_bytes(t, b) == t.nbytes)  # fmt: skip
    return matches, candidates


# Block of target elements read to rank candidates when some hold the target transposed (an ONNX
# export's MatMul initializers): RANK_BLOCK × RANK_BLOCK from its middle, the same 256 elements as
# `rank_span` but compact in both layouts, so a transposed candidate costs RANK_BLOCK of its rows.
RANK_BLOCK = 16


def transposed_candidates(
    targets: Sequence[TensorShape], bases: Sequence[TensorShape], matches: Sequence[TensorMatch]
) -> dict[str, list[str]]:
    """For each 2-D target left unpaired by `match_tensors`' names, the unpaired base tensors whose shape
    is its transpose ([r, c] against [c, r]; square ones too, since an exporter may transpose those as
    well), to be measured like same-shape candidates: closeness decides, never the shape."""
    paired = {m.target for m in matches}
    used = {m.base for m in matches}
    unused = [b for b in bases if b.name not in used and len(b.shape) == 2]
    left = [t for t in targets if t.name not in paired and len(t.shape) == 2 and t.nbytes > 0 and t.dtype.byte_aligned]

    def accept(t: TensorShape, b: TensorShape) -> bool:
        return transposed_of(t.shape, b.shape) is not None and casts.can_predict(b.dtype, t.dtype)

    return _shape_candidates(left, unused, lambda t: (t.shape[1], t.shape[0]), accept)


def _shape_candidates(
    targets: Sequence[TensorShape],
    bases: Sequence[TensorShape],
    wanted: Callable[[TensorShape], tuple[int, ...]],
    accept: Callable[[TensorShape, TensorShape], bool],
) -> dict[str, list[str]]:
    """{target name: sorted names of the bases of shape `wanted(target)` that `accept` it}, for targets
    with between 1 and MAX_SHAPE_CANDIDATES of them (more says nothing: the shape is too common)."""
    by_shape: dict[tuple[int, ...], list[TensorShape]] = {}
    for b in bases:
        by_shape.setdefault(b.shape, []).append(b)
    out: dict[str, list[str]] = {}
    for t in targets:
        same = [b.name for b in by_shape.get(wanted(t), []) if accept(t, b)]
        if 0 < len(same) <= MAX_SHAPE_CANDIDATES:
            out[t.name] = sorted(same)
    return out


def rank_block(shape: tuple[int, ...]) -> tuple[range, range]:
    """Rows and columns of a 2-D tensor's ranking block: RANK_BLOCK of each from its middle."""
    rows, cols = shape
    k_r, k_c = min(RANK_BLOCK, rows), min(RANK_BLOCK, cols)
    r0, c0 = (rows - k_r) // 2, (cols - k_c) // 2
    return range(r0, r0 + k_r), range(c0, c0 + k_c)
