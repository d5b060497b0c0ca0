"""Candidate base models for a new file, assembled from the catalog and measured on sampled slices.

A candidate is a whole model (every stored shard of one directory of one revision), so a fine-tune
saved with another `max_shard_size` finds each of its tensors in whichever base shard holds it. Its
tensors are paired with the new file's by `match_tensors` (names, prefix-normalised names, grown rows,
then same-shape tensors measured one by one), and the pairing is measured on samples: a model whose
paired tensors do not code measurably smaller is not a base.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np

from storage.catalog import damage, plans, relatives, repos, sketches
from storage.catalog.files import FileSnapshot, family_members, snapshot
from storage.catalog.plans import TensorPlan
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import InvalidInput, NotFound
from storage.core.families import (
    MAX_BASE_SCORE,
    MAX_UNRANKED_CANDIDATES,
    MEASURED_SHAPE_CANDIDATES,
    TensorMatch,
    TensorShape,
    base_score,
    fingerprint,
    match_tensors,
    rank_block,
    rank_span,
    sample_spans,
    transposed_candidates,
)
from storage.core.formats.base import ReadRange, TensorEntry
from storage.core.layouts import Transposed, transposed_of
from storage.core.segments import HEADER_SEGMENT
from storage.core.sketches import value_distances, widenable
from workers.jobs.context import JobContext
from workers.jobs.encoding import BaseTensors, base_reader

log = logging.getLogger(__name__)

# Candidate models measured per ingest (the declared base's first): ~2 MiB of samples read per model.
MAX_CANDIDATES = 8
# Of those, besides the relatives nearest by sketch, the most recent family members (relatives stored
# before sketches were recorded have none).
RECENT = 2
# The new file's largest tensors whose byte sizes find candidates by content.
SIZE_PROBES = 8
# A shard index larger than this is not read (real ones are a few hundred KiB at most).
MAX_INDEX_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A stored model's tensors by name, with the file each comes from and the plans chains need."""

    files: tuple[str, ...]
    by_name: dict[str, tuple[str, TensorPlan]]
    plans: dict[str, TensorPlan]

    def shapes(self) -> list[TensorShape]:
        return [TensorShape(name, DTYPES[p.dtype], p.shape) for name, (_, p) in self.by_name.items()]


def load_model(ctx: JobContext, shas: Sequence[str]) -> StoredModel:
    """Tensors of the files `shas` (the first file holding a name wins: two exports of one model hold
    the same weights)."""
    by_name: dict[str, tuple[str, TensorPlan]] = {}
    with ctx.session() as s:
        segs = {sha: plans.segments(s, sha) for sha in shas}
        tensor_plans = plans.tensor_plans(s, {seg.tensor_id for ss in segs.values() for seg in ss})
    for sha in shas:
        for seg in segs[sha]:
            if seg.name and seg.name != HEADER_SEGMENT and seg.name not in by_name:
                by_name[seg.name] = (sha, tensor_plans[seg.tensor_id])
    return StoredModel(tuple(shas), by_name, tensor_plans)


def _indexed(ctx: JobContext, model: relatives.ModelFiles) -> list[str]:
    """The model's weight files; where a `*.index.json` lists shards, only those it lists (a directory
    may also hold a consolidated copy, or another export)."""
    listed: set[str] = set()
    for path, sha in model.indexes:
        with ctx.session() as s:
            size = snapshot(s, sha).size
        if size > MAX_INDEX_BYTES:
            continue
        try:
            document = json.loads(b"".join(ctx.read(sha)))
            weight_map = document.get("weight_map") if isinstance(document, dict) else None
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(weight_map, dict):
            folder = posixpath.dirname(path)
            listed |= {posixpath.join(folder, v) for v in weight_map.values() if isinstance(v, str)}
    chosen = [sha for path, sha in model.weights if path in listed]
    return chosen or [sha for _, sha in model.weights]


def candidate_models(
    ctx: JobContext,
    sha256: str,
    tensors: Sequence[TensorEntry],
    *,
    declared: str | None,
    me: str | None,
    stored_after: datetime | None,
    nearest: Sequence[str] = (),
) -> list[list[str]]:
    """File lists of the models worth measuring: the declared base repository's, then the `nearest`
    relatives by sketch (workers/jobs/neighbours.py), the family's root, the most recent members, then
    those holding tensors of the sizes of our largest (a cast base holds twice the bytes), most promising
    first; never one holding this file or declaring our repository its base."""
    largest = sorted({t.nbytes for t in tensors if t.nbytes > 0}, reverse=True)[:SIZE_PROBES]
    sizes = largest + [2 * n for n in largest]
    found: list[relatives.ModelFiles] = []
    family = fingerprint(tensors)
    with ctx.session() as s:
        if declared:
            try:
                head = repos.branch_head(s, repos.find_repo(s, declared), "main")
            except (NotFound, InvalidInput):  # an unknown or invalid name is a bad hint, not an error
                head = None
            if head is not None:
                found += [relatives.directory_files(s, head, d) for d in relatives.model_directories(s, head)]
        root = sketches.family_root(s, family) if stored_after is None else None
        members = family_members(s, family, exclude=sha256, limit=RECENT, stored_after=stored_after)
        by_size = relatives.files_with_sizes(s, sizes, exclude=sha256, limit=MAX_CANDIDATES, stored_after=stored_after)
        for sha in [*nearest, *([root] if root and root != sha256 else []), *[m.sha256 for m in members], *by_size]:
            found.append(relatives.model_of(s, sha))
        snaps: dict[str, FileSnapshot] = {}
        for model in found:
            for _, sha in model.weights:
                snaps.setdefault(sha, snapshot(s, sha))
        # Never measured, never a base: a damaged model's bytes cannot be read (a push repairs it).
        damaged = damage.damaged_among(s, snaps)
    out: list[list[str]] = []
    for model in found:
        shas = _indexed(ctx, model)
        if not shas or shas in out or sha256 in shas or damaged.intersection(shas):
            continue
        # A file that names this repository as its base will be rebased onto us: never the other way round.
        if me is not None and any(snaps[x].declared_base == me for x in shas if x in snaps):
            continue
        out.append(shas)
    return out[:MAX_CANDIDATES]


@dataclass(frozen=True, slots=True)
class Measured:
    base: BaseTensors
    # Expected coded size ÷ coded alone over the whole file: unpaired bytes count as coded alone.
    cost: float


def measure(
    ctx: JobContext, tensors: Sequence[TensorEntry], read: ReadRange, model: StoredModel
) -> Measured | None:
    """Pair the file's tensors with the model's and measure the pairing on sampled slices; None when
    nothing pairs or the pairing does not measurably help."""
    shapes = {t.name: TensorShape(t.name, t.dtype, t.shape) for t in tensors}
    matches, shape_candidates = match_tensors(list(shapes.values()), model.shapes())
    infos = {t.name: t for t in tensors}
    pairs = _pairs(ctx, infos, read, model, matches)
    score = base_score(pairs) if pairs else 1.0
    # target name -> (base tensor name, bytes the base covers, measured score)
    chosen: dict[str, tuple[str, int, float]] = {}
    if score < MAX_BASE_SCORE:
        chosen = {m.target: (m.base, m.shared_bytes, score) for m in matches}
    # What names left unpaired, a tensor of the same shape may still be, or one holding it transposed (an
    # ONNX MatMul initializer is its Linear weight transposed): the nearest by sampled values, each
    # measured on its own, the layout with it.
    def read_target(name: str, a: int, b: int) -> bytes:
        return read(infos[name].offset + a, infos[name].offset + b)

    flipped = transposed_candidates(list(shapes.values()), model.shapes(), matches)
    nearest = nearest_same_shape(ctx, shapes, read_target, model,
                                 {k: v for k, v in shape_candidates.items() if k not in flipped})  # fmt: skip
    options = {t: [(n, False) for n in names] for t, names in nearest.items()}
    options |= nearest_either_layout(ctx, shapes, read_target, model, shape_candidates, flipped)
    transposed: set[str] = set()
    for target, named in options.items():
        best: tuple[float, str, bool] | None = None
        for name, flip in named:
            alone = [TensorMatch(target, name, "shape", infos[target].nbytes)]
            one = base_score(_pairs(ctx, infos, read, model, alone, transposed=flip))
            if one < MAX_BASE_SCORE and (best is None or one < best[0]):
                best = (one, name, flip)
        if best is not None:
            chosen[target] = (best[1], infos[target].nbytes, best[0])
            if best[2]:
                transposed.add(target)
    if not chosen:
        return None
    total = sum(t.nbytes for t in tensors) or 1
    saved = sum(covered * (1 - one) for _, covered, one in chosen.values())
    by_file: dict[str, int] = {}
    for name, covered, _ in chosen.values():
        source = model.by_name[name][0]
        by_file[source] = by_file.get(source, 0) + covered
    principal = max(sorted(by_file), key=lambda f: by_file[f])
    paired = {target: model.by_name[name][1] for target, (name, _, _) in chosen.items()}
    return Measured(BaseTensors(principal, score if pairs else min(c[2] for c in chosen.values()), paired,
                                model.plans, frozenset(transposed)), 1 - saved / total)  # fmt: skip


def nearest_same_shape(
    ctx: JobContext,
    targets: dict[str, TensorShape],
    read: Callable[[str, int, int], bytes],
    model: StoredModel,
    candidates: dict[str, list[str]],
) -> dict[str, list[str]]:
    """Of each target's same-shape candidates (`match_tensors`), the MEASURED_SHAPE_CANDIDATES nearest by
    the values of one sampled span (`rank_span`); `read(target, a, b)` gives bytes [a, b) of a target
    tensor. Cost: one span of each candidate base tensor (read once) and of each target, then
    O(targets × candidates × RANK_ELEMENTS) arithmetic: for MiniLM's 24 attention matrices, 24 × 24."""
    runs: dict[tuple[str, str], tuple[bytes, str]] = {}
    out: dict[str, list[str]] = {}
    for target, names in candidates.items():
        t = targets[target]
        if len(names) <= MEASURED_SHAPE_CANDIDATES:
            out[target] = names
            continue
        if not widenable(t.dtype.name) or not all(widenable(model.by_name[n][1].dtype) for n in names):
            out[target] = names if len(names) <= MAX_UNRANKED_CANDIDATES else []
            continue
        a, b = rank_span(t)
        for n in names:
            if (n, t.dtype.name) not in runs:
                plan = model.by_name[n][1]
                runs[n, t.dtype.name] = (base_reader(ctx, model.plans, plan.id, t.dtype)(a, b), plan.dtype)
        far = value_distances(read(target, a, b), t.dtype.name, [runs[n, t.dtype.name] for n in names])
        out[target] = [names[i] for i in np.argsort(far, kind="stable")[:MEASURED_SHAPE_CANDIDATES]]
    return out


def nearest_either_layout(
    ctx: JobContext,
    targets: dict[str, TensorShape],
    read: Callable[[str, int, int], bytes],
    model: StoredModel,
    same_shape: dict[str, list[str]],
    flipped: dict[str, list[str]],
) -> dict[str, list[tuple[str, bool]]]:
    """For each target with candidates holding it transposed (`transposed_candidates`), the
    MEASURED_SHAPE_CANDIDATES nearest of those and its same-shape ones together, as (name, transposed),
    ranked by the values of one block of elements (`rank_block`) read in each candidate's layout. Cost:
    RANK_BLOCK rows of each candidate and of each target, then O(targets × candidates × RANK_BLOCK²)."""
    out: dict[str, list[tuple[str, bool]]] = {}
    rows_read: dict[tuple[str, int], bytes] = {}
    for target, names in flipped.items():
        t = targets[target]
        named = [(n, False) for n in same_shape.get(target, [])] + [(n, True) for n in names]
        if len(named) <= MEASURED_SHAPE_CANDIDATES:
            out[target] = named
            continue
        if not widenable(t.dtype.name) or not all(widenable(model.by_name[n][1].dtype) for n, _ in named):
            out[target] = named if len(named) <= MAX_UNRANKED_CANDIDATES else []
            continue
        rows, cols = rank_block(t.shape)
        mine = _block(partial(read, target), t.shape, t.dtype.itemsize, rows, cols)
        runs = []
        for name, flip in named:
            plan = model.by_name[name][1]
            # Every target of one shape reads the same block of a candidate in one layout.
            key = (plan.id, int(flip))
            size = DTYPES[plan.dtype].itemsize

            def read_base(a: int, b: int, plan_id: str = plan.id) -> bytes:
                return ctx.reader.read_tensor(model.plans, plan_id, a, b)

            if key not in rows_read:
                rows_read[key] = _block(read_base, plan.shape, size, cols, rows, transpose=True) if flip else \
                    _block(read_base, plan.shape, size, rows, cols)  # fmt: skip
            runs.append((rows_read[key], plan.dtype))
        far = value_distances(mine, t.dtype.name, runs)
        out[target] = [named[i] for i in np.argsort(far, kind="stable")[:MEASURED_SHAPE_CANDIDATES]]
    return out


def _block(
    read: Callable[[int, int], bytes], shape: tuple[int, ...], itemsize: int, rows: range, cols: range, *,
    transpose: bool = False,
) -> bytes:
    """Elements [rows × cols] of a row-major 2-D tensor (one read of whole rows), row-major; with
    `transpose`, the block's transpose (the elements a transposed target holds at its own block)."""
    width = shape[1] * itemsize
    raw = read(rows.start * width, rows.stop * width)
    block = np.frombuffer(raw, dtype=f"V{itemsize}").reshape(len(rows), shape[1])[:, cols.start : cols.stop]
    return np.ascontiguousarray(block.T if transpose else block).tobytes()


def _pairs(
    ctx: JobContext,
    infos: dict[str, TensorEntry],
    read: ReadRange,
    model: StoredModel,
    matches: Sequence[TensorMatch],
    *,
    transposed: bool = False,
) -> list[tuple[bytes, bytes, DType, DType]]:
    """(target slice, base slice, dtype, base dtype) over sampled slices of the paired bytes; with
    `transposed`, each base is read as its transpose (the whole base is read once per reader)."""
    by_target = {m.target: m for m in matches}
    # Sample only what the base covers: a grown tensor's shared rows.
    shared = [TensorEntry(m.target, infos[m.target].dtype, infos[m.target].shape, infos[m.target].offset,
                          m.shared_bytes) for m in matches]  # fmt: skip
    out = []
    for span in sample_spans(shared):
        info, match = infos[span.name], by_target[span.name]
        plan = model.by_name[match.base][1]
        target = read(info.offset + span.start, info.offset + span.end)
        layout: Transposed | None = transposed_of(info.shape, plan.shape) if transposed else None
        base = base_reader(ctx, model.plans, plan.id, info.dtype, layout)(span.start, span.end)
        out.append((target, base, info.dtype, DTYPES[plan.dtype]))
    return out
