"""Garbage collection: delete what nothing references and what is older than the grace period.

Catalog rows go first (in transactions, where foreign keys stop a concurrent ingest from referencing
what is being removed), store objects after. See docs/format.md, "Garbage collection".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.app.xet_uploads import collect_xet_garbage
from storage.catalog import counters
from storage.catalog import gc as catalog_gc
from storage.core import keys
from storage.core.faults import crash_point
from storage.core.packs import PackBuilder
from workers.jobs.context import JobContext

log = logging.getLogger(__name__)

# A pack whose live frames fill less than this is rewritten with only them: rebases leave the old
# frames of the tensors they re-encode inside packs that other, live frames keep referenced.
REPACK_BELOW = 0.5


@dataclass
class GcReport:
    files: int = 0
    tensors: int = 0
    objects: int = 0
    orphans: int = 0
    repacked: int = 0
    bytes_freed: int = 0
    deleted_keys: list[str] = field(default_factory=list)


def collect_garbage(ctx: JobContext, *, dry_run: bool = False, grace_seconds: float | None = None) -> GcReport:
    grace = ctx.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    report = GcReport()
    with ctx.session() as s:
        dropped, staging_keys = catalog_gc.drop_unreferenced_files(s, cutoff)
        report.files = len(dropped)
        report.tensors = catalog_gc.drop_unreferenced_tensors(s)
        crash_point("gc.mid_catalog_deletes")
        if dry_run:
            object_keys = catalog_gc.drop_unreferenced_objects(s, cutoff)
            s.rollback()
    if not dry_run:
        # After the tensors above are gone, so packs they leave sparse are rewritten in this same run.
        report.repacked = _repack(ctx, cutoff)
        # Taken after repacking: a pack it emptied waits a full grace period like any other (0: at once).
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        with ctx.session() as s:
            object_keys = catalog_gc.drop_unreferenced_objects(s, cutoff)
    crash_point("gc.after_catalog_deletes")
    if not dry_run:
        # Their hot copies go too (storage/app/hotfiles.py): after the catalog no longer names the files,
        # so no read finds a file whose copy is being deleted. Copies in another process's directory go
        # at that cache's next sweep; none is ever served for a file the catalog lacks.
        ctx.forget_files(dropped)
    doomed = list(staging_keys) + list(object_keys)
    with ctx.session() as s:
        known = catalog_gc.known_keys(s)
    for prefix in keys.ALL_PREFIXES:
        for info in ctx.store.list(prefix):
            if info.key not in known and info.last_modified < cutoff and info.key not in doomed:
                doomed.append(info.key)
                report.orphans += 1
    report.objects = len(object_keys)
    for key in doomed:
        head = ctx.store.head(key)
        if head is None:
            continue
        report.bytes_freed += head.size
        report.deleted_keys.append(key)
        if not dry_run:
            ctx.store.delete(key)
            crash_point("gc.mid_object_deletes")
    # Xet: xorb copies no shard came for, and xorbs whose chunks no file holds any more.
    swept = collect_xet_garbage(ctx.store, ctx.session, cutoff, dry_run=dry_run)
    report.orphans += swept.raw_xorbs
    report.bytes_freed += swept.bytes_freed
    # Writes a crash cut short leave temporary files that no key names (the local store's tmp/).
    if not dry_run:
        report.orphans += ctx.store.remove_stale_temp_files(timedelta(seconds=grace))
        with ctx.session() as s:
            counters.add(s, counters.GC_RUNS, 1)
            counters.add(s, counters.GC_FREED_BYTES, report.bytes_freed)
            counters.add(s, counters.GC_DELETED_OBJECTS, len(report.deleted_keys))
    log.info("gc%s: %s", " (dry run)" if dry_run else "", report)
    return report


def _repack(ctx: JobContext, cutoff: datetime) -> int:
    """Rewrite sparse packs with only their live frames. The emptied packs restart their GC clock: they
    are deleted a grace period after the move, as readers may hold plans that name them."""
    with ctx.session() as s:
        sparse = catalog_gc.sparse_packs(s, cutoff, REPACK_BELOW)
    for key in sparse:
        with ctx.session() as s:
            frames = catalog_gc.live_frames(s, key)
        data = ctx.store.get(key)
        packer = PackBuilder(target_bytes=len(data) + 1, solo_bytes=len(data) + 1)
        tickets = [(tensor_id, seq, offset, packer.add(data[offset : offset + length]))
                   for tensor_id, seq, offset, length in frames]
        packer.seal()
        (sealed,) = packer.take_sealed()
        ctx.store.put_if_absent(sealed.key, sealed.data)
        moves = [(t, q, old, packer.placement(ticket).offset) for t, q, old, ticket in tickets]
        with ctx.session() as s:
            catalog_gc.move_frames(s, key, sealed.key, len(sealed.data), moves)
    return len(sparse)
