"""A new file's relatives by sketch (storage/core/sketches.py): the nearest, to measure as bases; the
family's centre (the median of its kin), which orients every edge (the relative nearer the centre is
the parent's side); and the stored kin to rebase once the new file is stored: those it is a better
base for (its children, pushed before it), then, within a per-ingest budget, kin coded against a worse
base than another stored kin.

One catalog query and a few vectorised passes per ingest, whatever the family's size: the sketches of
a layout are read once (6 KiB each) and every decision below is taken from those distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from storage.catalog import sketches
from storage.core.formats.base import ReadRange, TensorEntry
from storage.core.sketches import SketchSet, plan_sketch, sketch_values
from workers.jobs.context import JobContext

Sketch = tuple[str, bytes]  # (layout, values)

# Relatives measured as bases: the NEAREST among the NEAREST_POOL nearest whose chains are not full,
# upstream ones (below) first.
NEAREST = 4
NEAREST_POOL = 16
# Stored files this far or nearer by sketch are kin (the newcomer's lineage): on the synthetic lineage
# relatives sit 1.7-6 apart and an unrelated run of the same architecture ~27; a dense fine-tune moves
# every element a few BF16 ulps (~16-20).
KIN = 24.0
# The family's centre is the elementwise median of at most this many kin (spread over all distances).
CENTRE_SAMPLE = 63
# Below this many stored kin a median is no common ancestor (of a parent, child and grandchild it is
# the child): no centre, and a relative is adopted only by a newcomer that sits between it and its base
# (nearer to both than they are to each other, by ADOPT_MARGIN).
MIN_CENTRE = 8
# A relative is *upstream* of another (nearer the family's centre, so the parent side of an edge) when
# nearer to the centre by this much: on the synthetic lineage generations sit 1.7, 3.2 and 4.5 from the
# centre (the root's values), ±0.2 within a generation.
UPSTREAM = 0.5
# A stored relative is adopted (re-encoded against the newcomer, or repaired onto a more central kin)
# when that one is upstream of it and nearer than its current base by this margin (a parent at 1.7 vs
# a sibling or grandparent at ~3.2), or as near while its current base is not upstream of it (a parent
# coded against its own child, pushed first): chains then run towards the centre, so they are no deeper
# than the lineage's generations, whatever the order of arrival. A plain relative is adopted by any
# upstream kin. Measured bytes still decide each tensor (`rebase_file`).
ADOPT_MARGIN = 0.8
REORIENT_SLACK = 1.05
# Rebases per ingest (adoptions first, then repairs), the most worth first (`_gains`): each costs
# about one ingest of that file, so ingest time per file does not grow with the family; what is left is
# picked up by later ingests of the family.
REBASE_BUDGET = 4
# Of which repairs at most (adoptions are the new file's own children; repairs are owed by the family).
REPAIR_BUDGET = 4
# Repairs look at every kin's base against the newcomer's most central kin (hubs) and the kin nearest
# to the newcomer against each other.
HUBS = 2


def take_sketch(tensors: Sequence[TensorEntry], read: ReadRange) -> Sketch | None:
    """The file's sketch, read from its bytes (a few dozen small ranges), or None if it has none."""
    plan = plan_sketch(tensors)
    if plan is None:
        return None
    offsets = {t.name: t.offset for t in tensors}
    chunks = [read(offsets[span.name] + span.start, offsets[span.name] + span.end) for span in plan.spans]
    return plan.layout, sketch_values(plan, chunks)


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The stored files of the new file's sketch layout: (sha256, sketch, base sha256), nearest first,
    their distances to the new file and to the centre of its kin (inf for those not kin), and the new
    file's own distance to that centre."""

    sketch: bytes
    rows: tuple[tuple[str, bytes, str | None], ...]
    apart: npt.NDArray[np.float64]
    central: npt.NDArray[np.float64]
    me_central: float
    members: SketchSet
    at: dict[str, int]  # sha256 -> row

    def upstream(self, sha: str) -> bool | None:
        """Whether the stored relative `sha` is nearer the family's centre than the new file (None: not
        known, e.g. not kin); `downstream` likewise."""
        i = self.at.get(sha)
        if i is None or not np.isfinite(self.central[i]):
            return None
        return bool(self.central[i] < self.me_central - UPSTREAM)

    def downstream(self, sha: str) -> bool | None:
        i = self.at.get(sha)
        if i is None or not np.isfinite(self.central[i]):
            return None
        return bool(self.central[i] > self.me_central + UPSTREAM)


def neighbours(ctx: JobContext, sha256: str, sketch: Sketch, *, stored_after: datetime | None = None) -> Neighbours:
    layout, values = sketch
    with ctx.session() as s:
        found = [r for r in sketches.sketches_and_bases(s, layout, exclude=sha256, stored_after=stored_after)
                 if len(r[1]) == len(values)]  # fmt: skip
    unsorted = SketchSet([v for _, v, _ in found])
    apart = unsorted.to(values)
    order = sorted(range(len(found)), key=lambda i: (apart[i], found[i][0]))
    rows = tuple(found[i] for i in order)
    apart = apart[order] if rows else apart
    members = SketchSet([v for _, v, _ in rows])
    kin = np.flatnonzero(apart < KIN)
    central = np.full(len(rows), np.inf)
    me_central = np.inf
    if len(kin) >= MIN_CENTRE:
        sample = kin[np.linspace(0, len(kin) - 1, min(len(kin), CENTRE_SAMPLE)).astype(np.intp)]
        centre = members.centre(np.unique(sample), extra=values)
        central[kin] = members.to(centre)[kin]
        me_central = float(SketchSet([values]).to(centre)[0])
    return Neighbours(values, rows, apart, central, me_central, members, {sha: i for i, (sha, _, _) in enumerate(rows)})


def nearest(ctx: JobContext, near: Neighbours, *, exclude: Sequence[str] = ()) -> list[str]:
    """The `NEAREST` relatives, upstream of the new file first, then those neither up- nor downstream
    (a sibling), then downstream ones; skipping those whose chains are already `max_chain_depth` deep
    (they could only hand the new file over to their own bases) unless there is no other."""
    farther = np.where(near.central > near.me_central + UPSTREAM, 2, 1)
    side = np.where(near.central < near.me_central - UPSTREAM, 0, farther)
    ranked = sorted(range(len(near.rows)), key=lambda i: (int(side[i]), i))
    pool = [near.rows[i][0] for i in ranked if near.rows[i][0] not in exclude][:NEAREST_POOL]
    with ctx.session() as s:
        depths = sketches.chain_depths(s, pool)
    open_ = [sha for sha in pool if depths.get(sha, 0) < ctx.settings.max_chain_depth]
    return (open_ or pool)[:NEAREST]


def _gains(near: Neighbours, members: npt.NDArray[np.intp], to_new: npt.NDArray[np.float64],
           new_central: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # fmt: skip
    """For each stored relative in `members`, how much re-basing it onto a candidate at `to_new` from it
    and `new_central` from the centre is worth (0: not worth it, see ADOPT_MARGIN; more the smaller the
    distance to the candidate is against that to its current base)."""
    bases = np.array([near.at.get(near.rows[i][2] or "", -1) for i in members], dtype=np.intp)
    plain = np.array([near.rows[i][2] is None for i in members], dtype=bool)
    known = bases >= 0
    to_base = np.full(len(members), np.inf)
    to_base[known] = near.members.between(members[known], bases[known])
    base_up = np.zeros(len(members), dtype=bool)
    base_up[known] = near.central[bases[known]] < near.central[members[known]] - UPSTREAM
    upstream = new_central < near.central[members] - UPSTREAM
    nearer = to_new < ADOPT_MARGIN * to_base
    reorient = ~base_up & known & (to_new <= REORIENT_SLACK * to_base)
    worth = upstream & (to_new < KIN) & (plain | nearer | reorient)
    # Nearest relative to the current base first: a child coded against a sibling (1.7 vs 3.2) before
    # a cousin whose base is farther still.
    ratio = to_new / np.where(plain, KIN, np.maximum(to_base, 1e-9))
    return np.where(worth, 2.0 - ratio, 0.0)


def adoptable(near: Neighbours, sha256: str, *, base: str | None) -> list[str]:
    """Kin that would likely code smaller against the new file `sha256` than against their current base
    (see ADOPT_MARGIN), most worth first (`_gains`), at most REBASE_BUDGET; never the new file's own base
    nor a relative its base's chain passes through (that would be a cycle)."""
    above = _chain(near, base)
    if not np.isfinite(near.me_central):
        return [sha for sha in _between(near, sha256) if sha not in above][:REBASE_BUDGET]
    kin = np.flatnonzero(np.isfinite(near.central))
    kin = kin[[near.rows[i][2] != sha256 for i in kin]] if len(kin) else kin
    if not len(kin):
        return []
    gains = _gains(near, kin, near.apart[kin], np.full(len(kin), near.me_central))
    out = [near.rows[kin[j]][0] for j in np.argsort(-gains, kind="stable") if gains[j] > 0]
    return [sha for sha in out if sha not in above][:REBASE_BUDGET]


def _between(near: Neighbours, sha256: str) -> list[str]:
    """Without a centre: the relatives the new file sits between, nearest first (it is nearer to both
    them and their base than those are to each other: their parent, not a closer child)."""
    out: list[str] = []
    for (sha, _, current), to_new in zip(near.rows[:NEAREST_POOL], near.apart[:NEAREST_POOL], strict=True):
        if current is None or current == sha256 or current not in near.at:
            continue
        i, b = np.array([near.at[sha]], dtype=np.intp), np.array([near.at[current]], dtype=np.intp)
        to_base = float(near.members.between(i, b)[0])
        if max(to_new, near.apart[b[0]]) < ADOPT_MARGIN * to_base:
            out.append(sha)
    return out


def repairs(near: Neighbours, sha256: str, *, base: str | None, budget: int) -> list[tuple[str, str]]:
    """(relative, new base) pairs among stored kin that would likely code smaller against another
    stored kin than against their current base: every kin against the most central kin (hubs), and the
    kin nearest to the new file against each other; most worth first (`_gains`), one per relative, at
    most `budget`, never closing a cycle (the chains are followed through the recorded bases)."""
    kin = np.flatnonzero(np.isfinite(near.central))
    if budget <= 0 or len(kin) < 2:
        return []
    hubs = kin[np.argsort(near.central[kin], kind="stable")[:HUBS]]
    pool = kin[:NEAREST_POOL]
    best: dict[int, tuple[float, int]] = {}
    for target in sorted({*hubs.tolist(), *pool.tolist()}):
        members = kin if target in hubs else pool
        members = members[members != target]
        to_target = near.members.between(members, np.full(len(members), target, dtype=np.intp))
        gains = _gains(near, members, to_target, np.full(len(members), near.central[target]))
        for i, gain in zip(members.tolist(), gains.tolist(), strict=True):
            if gain > 0 and gain > best.get(i, (0.0, -1))[0]:
                best[i] = (gain, target)
    bases = {sha: b for sha, _, b in near.rows} | {sha256: base}
    out: list[tuple[str, str]] = []
    for i, (_, target) in sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0])):
        sha, onto = near.rows[i][0], near.rows[target][0]
        if sha in _chain(near, onto, bases):
            continue
        out.append((sha, onto))
        bases[sha] = onto
        if len(out) == budget:
            break
    return out


def _chain(near: Neighbours, start: str | None, bases: dict[str, str | None] | None = None) -> set[str]:
    """`start` and the files its recorded base chain passes through."""
    if bases is None:
        bases = {sha: b for sha, _, b in near.rows}
    seen: set[str] = set()
    while start is not None and start not in seen:
        seen.add(start)
        start = bases.get(start)
    return seen
