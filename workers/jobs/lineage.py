"""Families at ingest time: choosing a new file's base, recording it, and rebasing older relatives.

A declared base is only a hint: every candidate is measured on sampled tensor slices and the nearest
wins; nothing is delta-coded against a model that does not measurably help (unrelated runs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from storage.catalog import files, plans, repos
from storage.catalog.files import FileSnapshot, Written
from storage.core.dtypes import DTYPES
from storage.core.errors import InvalidInput, NotFound
from storage.core.families import MAX_BASE_SCORE, base_score, fingerprint, sample_spans
from storage.core.faults import crash_point
from storage.core.formats.base import FileLayout, ReadRange
from storage.core.formats.registry import parses_tensors, read_layout
from storage.core.segments import HEADER_SEGMENT, Segment
from workers.jobs.context import JobContext
from workers.jobs.encoding import BaseTensors, ObjectWriter, PendingTensor, base_reader, encode_windows, predictable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Family members measured as candidates per ingest (besides the declared base): the most recent ones.
MAX_CANDIDATES = 8


def _declared_files(ctx: JobContext, declared: str | None) -> list[FileSnapshot]:
    """Stored safetensors files on the declared base repository's main branch (any fingerprint:
    the declaration is the hint, the measurement decides)."""
    if not declared:
        return []
    with ctx.session() as s:
        try:
            repo = repos.find_repo(s, declared)
        except (NotFound, InvalidInput):  # an unknown or invalid name is a bad hint, not an error
            return []
        head = repos.branch_head(s, repo, "main")
        if head is None:
            return []
        snaps = [files.snapshot(s, sha) for sha in set(repos.tree_files(s, head.oid).values())]
    return [x for x in snaps if x.state == "stored" and parses_tensors(x.kind)]


def _base_tensors(ctx: JobContext, sha256: str, score: float) -> BaseTensors:
    with ctx.session() as s:
        segs = plans.segments(s, sha256)
        tensor_plans = plans.tensor_plans(s, {seg.tensor_id for seg in segs})
    by_name = {seg.name: tensor_plans[seg.tensor_id] for seg in segs if seg.name and seg.name != HEADER_SEGMENT}
    return BaseTensors(sha256, score, by_name, tensor_plans)


def choose_base(
    ctx: JobContext,
    sha256: str,
    layout: FileLayout,
    read: ReadRange,
    *,
    repo_id: int | None,
    stored_after: datetime | None = None,
) -> BaseTensors | None:
    """The nearest stored relative, if one measurably helps. `stored_after` limits the candidates to
    family members stored since then (settling looks only at what it could not see before)."""
    tensors = layout.tensors or ()
    fp = fingerprint(tensors)
    with ctx.session() as s:
        me = files.repo_name(s, repo_id)
        declared = files.snapshot(s, sha256).declared_base if stored_after is None else None
        members = files.family_members(s, fp, exclude=sha256, limit=MAX_CANDIDATES, stored_after=stored_after)
    candidates = {c.sha256: c for c in _declared_files(ctx, declared) + members if c.sha256 != sha256}
    # A file that names this repository as its base will be rebased onto us: never the other way round.
    candidates = {k: c for k, c in candidates.items() if me is None or c.declared_base != me}
    if not candidates:
        return None
    infos = {t.name: t for t in tensors}
    spans = sample_spans(tensors)
    targets = [read(infos[sp.name].offset + sp.start, infos[sp.name].offset + sp.end) for sp in spans]
    best: BaseTensors | None = None
    for sha in sorted(candidates):
        base = _base_tensors(ctx, sha, 1.0)
        pairs = []
        for sp, target in zip(spans, targets, strict=True):
            plan = base.by_name.get(sp.name)
            dtype = infos[sp.name].dtype
            if plan is None or not predictable(plan, dtype, infos[sp.name].nbytes):
                continue
            base_raw = base_reader(ctx, base.plans, plan.id, dtype)(sp.start, sp.end)
            pairs.append((target, base_raw, dtype, DTYPES[plan.dtype]))
        score = base_score(pairs) if pairs else 1.0
        log.info("base candidate %s for %s scores %.3f", sha, sha256, score)
        if score < MAX_BASE_SCORE and (best is None or score < best.score):
            best = BaseTensors(base.sha256, score, base.by_name, base.plans)
    return best


def commit_file(
    session: Session,
    sha256: str,
    segments: Sequence[Segment],
    digests: Sequence[str],
    written: Written,
    *,
    layout: FileLayout,
    base: BaseTensors | None,
) -> None:
    files.record_written(session, written)
    crash_point("ingest.before_mark_stored")
    files.mark_stored(
        session,
        sha256,
        [(seg.seq, seg.offset, seg.length, digest, seg.name) for seg, digest in zip(segments, digests, strict=True)],
        fingerprint=fingerprint(layout.tensors) if layout.tensors is not None else None,
        base_sha256=base.sha256 if base else None,
    )
    crash_point("ingest.before_catalog_commit")


def settle(ctx: JobContext, sha256: str, *, repo_id: int | None, chosen_at: datetime) -> str | None:
    """A file stored alone may have had relatives ingested at the same moment, invisible when its base
    was chosen: choose again among the members stored now, and rebase onto the nearest if it helps.
    (Two such files may each pick the other; the family lock and the cycle check in the swap let only
    the first rebase happen.)"""
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
    best = choose_base(ctx, sha256, layout, read, repo_id=repo_id, stored_after=chosen_at - timedelta(seconds=1))
    if best is not None and rebase_file(ctx, sha256, best.sha256):
        return best.sha256
    return None


def rebase_dependents(ctx: JobContext, sha256: str, *, repo_id: int | None) -> list[str]:
    """Re-encode stored files that declare this file's repository as their base against this file."""
    with ctx.session() as s:
        me = files.repo_name(s, repo_id)
        fp = files.snapshot(s, sha256).fingerprint
        dependents = files.files_declaring(s, fp, me) if (me and fp) else []
    rebased = []
    for dep in dependents:
        if dep.base_sha256 != sha256 and dep.sha256 != sha256 and rebase_file(ctx, dep.sha256, sha256):
            rebased.append(dep.sha256)
    return rebased


def rebase_file(ctx: JobContext, sha256: str, onto: str) -> bool:
    """Re-encode the tensors of `sha256` against those of `onto` where that is smaller; swap atomically.

    The old frames' objects become unreferenced and are left to GC.
    """
    me = _base_tensors(ctx, sha256, 1.0)
    base = _base_tensors(ctx, onto, 0.0)
    max_depth = ctx.settings.max_chain_depth
    writer = ObjectWriter(ctx)
    swaps: list[PendingTensor] = []
    for name, tensor in me.by_name.items():
        candidate = base.by_name.get(name)
        dtype = DTYPES[tensor.dtype]
        if candidate is None or candidate.id == tensor.id or not predictable(candidate, dtype, tensor.nbytes):
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
            base=candidate,
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
