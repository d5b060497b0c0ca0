"""Garbage collection: delete what nothing references and what is older than the grace period.

Catalog rows go first (in transactions, where foreign keys stop a concurrent ingest from referencing
what is being removed), store objects after. See docs/format.md, "Garbage collection".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.catalog import gc as catalog_gc
from storage.faults import crash_point
from storage.hub import Hub
from storage.packs import PackBuilder
from storage.xet_uploads import xet_uploads_for

log = logging.getLogger(__name__)

PREFIXES = ("packs/", "frames/", "staging/")


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


def collect_garbage(hub: Hub, *, dry_run: bool = False, grace_seconds: float | None = None) -> GcReport:
    grace = hub.settings.gc_grace_seconds if grace_seconds is None else grace_seconds
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    report = GcReport()
    with hub.session() as s:
        report.files, staging_keys = catalog_gc.drop_unreferenced_files(s, cutoff)
        report.tensors = catalog_gc.drop_unreferenced_tensors(s)
        crash_point("gc.mid_catalog_deletes")
        if dry_run:
            object_keys = catalog_gc.drop_unreferenced_objects(s, cutoff)
            s.rollback()
    if not dry_run:
        # After the tensors above are gone, so packs they leave sparse are rewritten in this same run.
        report.repacked = _repack(hub, cutoff)
        # Taken after repacking: a pack it emptied waits a full grace period like any other (0: at once).
        cutoff = datetime.now(UTC) - timedelta(seconds=grace)
        with hub.session() as s:
            object_keys = catalog_gc.drop_unreferenced_objects(s, cutoff)
    crash_point("gc.after_catalog_deletes")
    doomed = list(staging_keys) + list(object_keys)
    with hub.session() as s:
        known = catalog_gc.known_keys(s)
    for prefix in PREFIXES:
        for info in hub.store.list(prefix):
            if info.key not in known and info.last_modified < cutoff and info.key not in doomed:
                doomed.append(info.key)
                report.orphans += 1
    report.objects = len(object_keys)
    for key in doomed:
        info = hub.store.head(key)
        if info is None:
            continue
        report.bytes_freed += info.size
        report.deleted_keys.append(key)
        if not dry_run:
            hub.store.delete(key)
            crash_point("gc.mid_object_deletes")
    # Xet: xorb copies no shard came for, and xorbs whose chunks no file holds any more.
    xet = xet_uploads_for(hub, hub.settings.max_upload_bytes)
    if xet is not None:
        swept = xet.collect_garbage(cutoff, dry_run=dry_run)
        report.orphans += swept.raw_xorbs
        report.bytes_freed += swept.bytes_freed
    # Writes a crash cut short leave temporary files that no key names (the local store's tmp/).
    sweep = getattr(hub.store, "remove_stale_temp_files", None)
    if sweep is not None and not dry_run:
        report.orphans += sweep(timedelta(seconds=grace))
    log.info("gc%s: %s", " (dry run)" if dry_run else "", report)
    return report


def _repack(hub: Hub, cutoff: datetime) -> int:
    """Rewrite sparse packs with only their live frames. The emptied packs restart their GC clock: they
    are deleted a grace period after the move, as readers may hold plans that name them."""
    with hub.session() as s:
        sparse = catalog_gc.sparse_packs(s, cutoff, REPACK_BELOW)
    for key in sparse:
        with hub.session() as s:
            frames = catalog_gc.live_frames(s, key)
        data = hub.store.get(key)
        packer = PackBuilder(target_bytes=len(data) + 1, solo_bytes=len(data) + 1)
        tickets = [(tensor_id, seq, offset, packer.add(data[offset : offset + length]))
                   for tensor_id, seq, offset, length in frames]
        packer.seal()
        (sealed,) = packer.take_sealed()
        hub.store.put_if_absent(sealed.key, sealed.data)
        moves = [(t, q, old, packer.placement(ticket).offset) for t, q, old, ticket in tickets]
        with hub.session() as s:
            catalog_gc.move_frames(s, key, sealed.key, len(sealed.data), moves)
    return len(sparse)
