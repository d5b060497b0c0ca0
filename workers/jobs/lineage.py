"""Families at ingest time: choosing a new file's base model, recording it, and rebasing older relatives.

A declared base is only a hint: every candidate model (workers/jobs/relatives.py) is measured on
sampled tensor slices and the nearest wins; nothing is delta-coded against a model that does not
measurably help (unrelated runs).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from storage.catalog import files, plans, relatives, sketches
from storage.catalog.files import Written
from storage.core.dtypes import DTYPES
from storage.core.families import TensorMatch, TensorShape, fingerprint, match_tensors
from storage.core.faults import crash_point
from storage.core.formats.base import FileLayout, ReadRange
from storage.core.formats.registry import parses_tensors, read_layout
from storage.core.segments import Segment
from workers.jobs.context import JobContext
from workers.jobs.encoding import (
    BaseTensors,
    ObjectWriter,
    PendingTensor,
    base_reader,
    encode_windows,
    shared_prefix,
)
from workers.jobs.neighbours import (
    REBASE_BUDGET,
    REPAIR_BUDGET,
    Neighbours,
    Sketch,
    adoptable,
    nearest,
    neighbours,
    repairs,
    take_sketch,
)
from workers.jobs.relatives import Measured, candidate_models, load_model, measure, nearest_same_shape

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def choose_base(
    ctx: JobContext,
    sha256: str,
    layout: FileLayout,
    read: ReadRange,
    *,
    repo_id: int | None,
    stored_after: datetime | None = None,
    near: Neighbours | None = None,
) -> BaseTensors | None:
    """The nearest stored relative model, if one measurably helps. `stored_after` limits the candidates
    to models with files stored since then (settling looks only at what it could not see before).

    A candidate whose chains are already `max_chain_depth` deep would hand our tensors over to its own
    bases, so the measured bytes would not be what we get: any open candidate that helps ranks first.
    Candidates nearer the family's centre than we are (by sketch: our parent's side) rank before those
    neither nearer nor farther (siblings), and those before farther ones (our children, pushed before
    us), so chains run towards the centre; when only farther ones help we are stored plain (re-rooted:
    the family's chains restart from us, instead of growing through our children). Relatives we are
    much nearer to than their own bases are adopted after we are stored (`adopt_relatives`), so they
    are not our base."""
    tensors = layout.tensors or ()
    if near is None:
        sketch = take_sketch(tensors, read)
        near = neighbours(ctx, sha256, sketch) if sketch else None
    with ctx.session() as s:
        me = files.repo_name(s, repo_id)
        declared = files.snapshot(s, sha256).declared_base if stored_after is None else None
    adoptees = set(adoptable(near, sha256, base=None)) if near and stored_after is None else set()
    closest = nearest(ctx, near, exclude=tuple(adoptees)) if near else []
    max_depth = ctx.settings.max_chain_depth
    best: tuple[int, bool, float, Measured] | None = None
    candidates = candidate_models(ctx, sha256, tensors, declared=declared, me=me, stored_after=stored_after,
                                  nearest=closest)  # fmt: skip
    # Files the sketch ranked below `closest` need no measuring (the other candidate queries are for
    # files without a comparable sketch); the declared base's models, first, are measured whatever.
    ranked = set(near.at).difference(closest) if near else set()
    for k, shas in enumerate(candidates):
        if adoptees.intersection(shas) or (ranked.issuperset(shas) and not (declared and k == 0)):
            continue
        measured = measure(ctx, tensors, read, load_model(ctx, shas))
        log.info("base candidate %s for %s costs %s", shas, sha256, f"{measured.cost:.3f}" if measured else "-")
        if measured is None:
            continue
        # Near-equal bytes go to the shallower base: chains stay open for the relatives still to come.
        cost = measured.cost * (1 + DEPTH_PENALTY * chain_depth(measured.base))
        rank = (_side(near, measured.base.sha256), full_chains(measured.base, max_depth), cost, measured)
        if best is None or rank[:3] < best[:3]:
            best = rank
    # Only files farther from the centre help: we are their parent's side (the family's root, pushed
    # after its descendants), stored plain, and they are adopted.
    if best is None or best[0] == 2:
        return None
    return best[3].base


def _side(near: Neighbours | None, sha: str) -> int:
    """0: nearer the family's centre than the new file, 2: farther, 1: neither or not known."""
    if near is None:
        return 1
    return 0 if near.upstream(sha) else 2 if near.downstream(sha) else 1


# Per level of the base's chain, what a base may cost more and still be preferred to a deeper one: a
# parent and a child of a file code alike (measured within ~2% of each other on the synthetic lineage),
# a grandparent or sibling ~45% worse.
DEPTH_PENALTY = 0.03


def chain_depth(base: BaseTensors) -> int:
    return max((p.chain_depth for p in base.by_name.values()), default=0)


def full_chains(base: BaseTensors, max_depth: int) -> bool:
    """Whether most of the bytes the base would cover lie in tensors whose chains are already full."""
    total = sum(p.nbytes for p in base.by_name.values())
    full = sum(p.nbytes for p in base.by_name.values() if p.chain_depth + 1 > max_depth)
    return total > 0 and 2 * full > total


def commit_file(
    session: Session,
    sha256: str,
    segments: Sequence[Segment],
    digests: Sequence[str],
    written: Written,
    *,
    layout: FileLayout,
    base: BaseTensors | None,
    sketch: Sketch | None = None,
    max_depth: int | None = None,
) -> set[str]:
    """Record what ingest wrote, its sketch, and mark the file stored; with `max_depth`, damaged tensors
    it coded again take their new encoding (returned)."""
    repaired = files.record_written(session, written, max_depth=max_depth)
    crash_point("ingest.before_mark_stored")
    files.mark_stored(
        session,
        sha256,
        [(seg.seq, seg.offset, seg.length, digest, seg.name) for seg, digest in zip(segments, digests, strict=True)],
        fingerprint=fingerprint(layout.tensors) if layout.tensors is not None else None,
        base_sha256=base.sha256 if base else None,
    )
    if sketch is not None:
        sketches.record_sketch(session, sha256, *sketch)
    crash_point("ingest.before_catalog_commit")
    return repaired


def settle(ctx: JobContext, sha256: str, *, repo_id: int | None, chosen_at: datetime | None) -> str | None:
    """A file stored alone may have had relatives ingested at the same moment, invisible when its base
    was chosen: choose again among the members stored now, and rebase onto the nearest if it helps.
    (Two such files may each pick the other; the family lock and the cycle check in the swap let only
    the first rebase happen.) `chosen_at` None looks at every stored relative again: after this file's
    ingest repaired damaged tensors, relatives refused as damaged at the choice are whole now, however
    long ago they were stored."""
    with ctx.session() as s:
        snap = files.snapshot(s, sha256)
    if snap.base_sha256 is not None or not parses_tensors(snap.kind):
        return None

    def read(start: int, end: int) -> bytes:
        return b"".join(ctx.read(sha256, start, end))

    # The stored file's structure, through the same bounded, hostile-input parse as at ingest.
    layout = read_layout(snap.kind, read, snap.size, max_header_bytes=ctx.settings.max_header_bytes,
                         max_tensors=ctx.settings.max_header_tensors)
    # Only members stored since our choice are new information; a second of slack covers clock steps.
    since = chosen_at - timedelta(seconds=1) if chosen_at is not None else None
    best = choose_base(ctx, sha256, layout, read, repo_id=repo_id, stored_after=since)
    if best is not None and rebase_file(ctx, sha256, best.sha256):
        return best.sha256
    return None


def rebase_dependents(ctx: JobContext, sha256: str, *, repo_id: int | None) -> list[str]:
    """Re-encode stored files that declare this file's repository as their base against its model."""
    with ctx.session() as s:
        me = files.repo_name(s, repo_id)
        dependents = relatives.files_declaring(s, me) if me else []
        dependents = [d for d in dependents if files.snapshot(s, d).base_sha256 != sha256]
    return [dep for dep in dependents if dep != sha256 and rebase_file(ctx, dep, sha256)]


def adopt_relatives(ctx: JobContext, sha256: str, near: Neighbours, *, base: str | None) -> list[str]:
    """Re-encode stored kin against the new file where it sits between them and the family's centre
    (its children pushed before it, coded against a sibling or a grandparent); then, with what is left
    of the per-ingest budget (REBASE_BUDGET), repair kin coded against a worse base than another stored
    kin (those the family's earlier ingests had no budget left for). Each tensor is swapped only where it
    codes smaller (`rebase_file`). `near` is from before the commit: the family's lease kept other
    relatives from arriving since."""
    adoptees = adoptable(near, sha256, base=base)
    adopted = [sha for sha in adoptees if _rebase_once(ctx, sha, sha256)]
    budget = min(REPAIR_BUDGET, REBASE_BUDGET - len(adoptees))
    for sha, onto in repairs(near, sha256, base=base, budget=budget):
        if sha not in adopted:
            _rebase_once(ctx, sha, onto)
    return adopted


# Per hub (job context), the (file, base) rebases tried in this process that swapped nothing: a repair
# chosen by sketch that the measured bytes (or the chain depth) refuse is not tried again at every
# ingest of the family.
_REFUSED: weakref.WeakKeyDictionary[JobContext, dict[tuple[str, str], None]] = weakref.WeakKeyDictionary()
_REFUSED_MAX = 4096


def _rebase_once(ctx: JobContext, sha256: str, onto: str) -> bool:
    refused = _REFUSED.setdefault(ctx, {})
    if (sha256, onto) in refused:
        return False
    if rebase_file(ctx, sha256, onto):
        return True
    if len(refused) >= _REFUSED_MAX:
        refused.pop(next(iter(refused)))
    refused[sha256, onto] = None
    return False


def rebase_file(ctx: JobContext, sha256: str, onto: str) -> bool:
    """Re-encode the tensors of `sha256` against those of the model `onto` belongs to (paired as at
    ingest) where that is smaller; swap atomically. The old frames' objects become unreferenced and are
    left to GC."""
    me = load_model(ctx, [sha256])
    with ctx.session() as s:
        model_files = relatives.model_of(s, onto)
    shas = [x for _, x in model_files.weights if x != sha256] or [onto]
    base = load_model(ctx, shas)
    mine = {p.id: name for name, (_, p) in me.by_name.items()}
    targets = [TensorShape(name, DTYPES[p.dtype], p.shape) for name, (_, p) in me.by_name.items()]
    matches, candidates = match_tensors(targets, base.shapes())
    shapes = {t.name: t for t in targets}

    def read_mine(name: str, a: int, b: int) -> bytes:
        return ctx.reader.read_tensor(me.plans, me.by_name[name][1].id, a, b)

    # Renamed tensors: the nearest of the same shape by value (swapped below only where it codes smaller).
    nearest = nearest_same_shape(ctx, shapes, read_mine, base, candidates)
    matches += [TensorMatch(t, names[0], "shape", shapes[t].nbytes) for t, names in sorted(nearest.items()) if names]
    max_depth = ctx.settings.max_chain_depth
    writer = ObjectWriter(ctx)
    swaps: list[PendingTensor] = []
    for match in matches:
        tensor, candidate = me.by_name[match.target][1], base.by_name[match.base][1]
        dtype = DTYPES[tensor.dtype]
        if candidate.id == tensor.id or mine.get(tensor.id) != match.target:
            continue
        if _chain_contains(base.plans, candidate.id, tensor.id):
            continue
        with ctx.session() as s:
            dependents = files.tensor_dependents(s, tensor.id)
        height = max((d - tensor.chain_depth for _, d in dependents), default=0)
        if candidate.chain_depth + 1 + height > max_depth:
            continue
        new = encode_windows(
            ctx, writer, tensor_id=tensor.id, dtype=dtype, shape=tensor.shape, nbytes=tensor.nbytes,
            read_raw=partial(ctx.reader.read_tensor, me.plans, tensor.id),
            read_base=base_reader(ctx, base.plans, candidate.id, dtype),
            base=candidate, shared=shared_prefix(candidate, dtype, tensor.shape),
        )
        old_size = sum(f.object_length for f in tensor.frames)
        if new.plan.base_id is not None and new.encoded_bytes < old_size:
            swaps.append(new)
    placed = writer.finish(swaps)
    crash_point("rebase.after_objects_written")
    if not swaps:
        return False
    with ctx.session() as s:
        files.lock_family(s, files.snapshot(s, sha256).fingerprint)
        files.record_written(s, Written(objects=writer.objects))
        swapped = 0
        for encoded in placed:
            swapped += files.replace_encoding(s, encoded, max_depth=max_depth)
            crash_point("rebase.mid_swap")
        if swapped:
            files.set_file_base(s, sha256, onto)
    crash_point("rebase.after_swap")
    log.info("rebased %d tensors of %s onto %s", swapped, sha256, onto)
    return swapped > 0


def _chain_contains(tensor_plans: dict[str, plans.TensorPlan], start: str, needle: str) -> bool:
    current: str | None = start
    while current is not None:
        if current == needle:
            return True
        plan = tensor_plans.get(current)
        current = plan.base_id if plan else None
    return False
