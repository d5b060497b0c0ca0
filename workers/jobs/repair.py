"""Repairing ingest: a stored file found damaged by `verify` and pushed again is re-encoded from the
pushed bytes (docs/reliability.md, "Repairing damaged data").

The upload staged the bytes (proven by their SHA-256) next to the stored form; here every damaged tensor
of the file is coded again, plain, and swapped in (objects first, catalog second, staging deleted last,
as at ingest; the staged copy goes only once the rebuilt file verifies, so the file stays held and
served throughout). Tensors delta-coded against a repaired one decode again without being touched: a delta is
against the base's bytes, which are the same. Then the damaged files holding what was re-encoded (or
delta-coded against it) are read again, and what now rebuilds byte-exact loses its damage record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from storage.catalog import files, plans
from storage.core.errors import IngestAbandoned, IntegrityError
from storage.core.faults import crash_point
from storage.core.segments import Segment
from workers.jobs import encoding
from workers.jobs.context import JobContext
from workers.jobs.damage import recheck

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Repaired:
    tensors: int
    encoded_bytes: int
    # Files still damaged after this repair (other files' data, or what this push could not mend).
    still_damaged: tuple[str, ...]


def repair_file(
    ctx: JobContext, sha256: str, staging_key: str, segments: Sequence[Segment], digests: Sequence[str],
    *, started: float,
) -> Repaired:
    with ctx.session() as s:
        recorded = [seg.tensor_id for seg in plans.segments(s, sha256)]
    if recorded != list(digests):
        # The format's parser cut the same bytes differently from when they were stored (a release
        # changed it): the catalog's segments are kept, and this push cannot name their tensors.
        raise IntegrityError(
            detail=f"file {sha256} now parses into other segments than it was stored as; it cannot be "
            "repaired by pushing it again"
        )
    jobs = encoding.plan_tensors(ctx, segments, digests, None)  # the damaged tensors, coded plain
    written = encoding.encode_and_write(ctx, staging_key, jobs)
    elapsed = time.monotonic() - started
    if elapsed > ctx.settings.gc_grace_seconds / 2:  # as at ingest: our new objects may be collectable
        raise IngestAbandoned(
            detail=f"repair of {sha256} ran {elapsed:.0f} s, more than half the GC grace period "
            f"({ctx.settings.gc_grace_seconds} s); retrying with fresh objects"
        )
    with ctx.session() as s:
        repaired = files.record_written(s, written, max_depth=ctx.settings.max_chain_depth)
    crash_point("ingest.after_catalog_commit")  # as at ingest: committed, staging not yet deleted
    # Checked while the pushed copy still serves the file and keeps it held (so the push's commit lands:
    # a damaged file without its copy is refused by commits).
    still = recheck(ctx, repaired, files_too=[sha256])
    if sha256 in still:
        # The stored form still does not rebuild: the verified copy keeps serving it; verify keeps naming it.
        log.error("repair of %s re-encoded %d tensors but the file still does not rebuild", sha256, len(repaired))
    else:
        with ctx.session() as s:
            files.drop_staging(s, sha256)
        ctx.store.delete(staging_key)
    log.info("repaired %d tensors of %s; still damaged: %s", len(repaired), sha256, still or "none")
    return Repaired(len(repaired), sum(f.object_length for t in written.tensors for f in t.frames), tuple(still))
