"""A new file's relatives by sketch (storage/core/sketches.py): the nearest, to measure as bases, and
those it sits between (their parent, pushed after them), to adopt once it is stored.

One catalog query and one vectorised pass per ingest, whatever the family's size: the sketches of a
layout are read once (6 KiB each) and every decision below is taken from those distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from storage.catalog import sketches
from storage.core.formats.base import ReadRange, TensorEntry
from storage.core.sketches import distances, plan_sketch, sketch_values
from workers.jobs.context import JobContext

Sketch = tuple[str, bytes]  # (layout, values)

# Relatives measured as bases: the NEAREST among the NEAREST_POOL nearest whose chains are not full.
NEAREST = 4
NEAREST_POOL = 16
# A stored relative is adopted (re-encoded against the newcomer) when the newcomer is nearer to both it
# and its current base than those two are to each other, by this margin: on the synthetic lineage a
# file sits ~1.7 from its parent and ~3.2 from its grandparent or a sibling; a dense fine-tune's log-ulp
# distances grow far more slowly with generations, so it is rarely adopted (measured bytes decide
# nothing here: only a rebase's own per-tensor measurement does). At most ADOPT per ingest, nearest
# first: each costs about one ingest of that file.
ADOPT_MARGIN = 0.8
ADOPT = 4


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
    and their distances to the new file."""

    sketch: bytes
    rows: tuple[tuple[str, bytes, str | None], ...]
    apart: npt.NDArray[np.float64]


def neighbours(ctx: JobContext, sha256: str, sketch: Sketch, *, stored_after: datetime | None = None) -> Neighbours:
    layout, values = sketch
    with ctx.session() as s:
        rows = [r for r in sketches.sketches_and_bases(s, layout, exclude=sha256, stored_after=stored_after)
                if len(r[1]) == len(values)]  # fmt: skip
    apart = distances(values, [v for _, v, _ in rows])
    order = sorted(range(len(rows)), key=lambda i: (apart[i], rows[i][0]))
    return Neighbours(values, tuple(rows[i] for i in order), apart[order] if rows else apart)


def nearest(ctx: JobContext, near: Neighbours, *, exclude: Sequence[str] = ()) -> list[str]:
    """The `NEAREST` relatives, skipping those whose chains are already `max_chain_depth` deep (they
    could only hand the new file over to their own bases) unless there is no other."""
    pool = [sha for sha, _, _ in near.rows if sha not in exclude][:NEAREST_POOL]
    with ctx.session() as s:
        depths = sketches.chain_depths(s, pool)
    open_ = [sha for sha in pool if depths.get(sha, 0) < ctx.settings.max_chain_depth]
    return (open_ or pool)[:NEAREST]


def adoptable(near: Neighbours, sha256: str, *, base: str | None) -> list[str]:
    """Relatives that would likely code smaller against the new file `sha256` than against their
    current base, because it sits between the two; nearest first, never the new file's own base."""
    by_sha = {sha: v for sha, v, _ in near.rows}
    out: list[str] = []
    for (sha, mine, current), to_new in zip(near.rows[:NEAREST_POOL], near.apart[:NEAREST_POOL], strict=True):
        if current is None or current == sha256 or sha == base or current not in by_sha:
            continue
        # Nearer to it than its base, and to its base than it is (a parent, not a closer child: a child
        # would gain what its relative loses).
        to_base = distances(mine, [by_sha[current]])[0]
        if max(to_new, distances(near.sketch, [by_sha[current]])[0]) < ADOPT_MARGIN * to_base:
            out.append(sha)
        if len(out) == ADOPT:
            break
    return out
