"""The ingest job: turn a staged file into deduplicated, delta- or plain-coded frames.

Pure of Celery: `run_ingest(ctx, job_id)` is called by the in-process pool and by the Celery task alike.
Idempotent: content-addressed objects and an "already stored?" check at every step make a retry (or a
second delivery) store nothing twice. Order: objects first, catalog second, staging deleted last.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

from storage.app.staging import read_staged_layout, sniff_staged_format, staged_reader
from storage.catalog import files, jobs, plans
from storage.catalog.models import FileState, utcnow
from storage.core.errors import DeltahubError, IngestAbandoned, InvalidInput
from storage.core.families import fingerprint
from storage.core.faults import crash_point
from storage.core.formats.base import FileLayout
from storage.core.formats.blob import FORMAT_ID as BLOB
from storage.core.formats.registry import parses_tensors
from storage.core.segments import hash_segments, opaque
from workers import retry
from workers.jobs import encoding, lineage, repair
from workers.jobs.context import JobContext
from workers.jobs.damage import recheck
from workers.jobs.external_data import external_data_layout
from workers.jobs.family_lock import family_lease
from workers.jobs.neighbours import neighbours, take_sketch

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    sha256: str
    state: str
    new_tensors: int = 0
    deduplicated_tensors: int = 0
    delta_tensors: int = 0
    raw_bytes: int = 0
    encoded_bytes: int = 0
    base_sha256: str | None = None
    rebased: list[str] = field(default_factory=list)
    # After a repair: damaged files that still do not rebuild.
    still_damaged: list[str] = field(default_factory=list)


def run_ingest(ctx: JobContext, job_id: int, *, final_attempt: bool | None = None) -> IngestResult | None:
    """Run one ingest job; returns None when the job does not exist or is already done."""
    with ctx.session() as s:
        job = jobs.start_job(s, job_id)
    if job is None:
        return None
    crash_point("ingest.after_start_job")
    started = time.monotonic()
    try:
        result = ingest_file(ctx, job.file_sha256, repo_id=job.repo_id)
    except Exception as exc:
        # Bad bytes stay bad (final at once, whoever runs the job); anything else follows the policy.
        final = not retry.is_retryable(exc) or (
            final_attempt if final_attempt is not None else retry.is_final(exc, job.attempts)
        )
        # Only our own errors carry a message meant for users; anything else is logged in full.
        message = exc.message if isinstance(exc, DeltahubError) else f"{type(exc).__name__}: {exc}"
        log.exception("ingest job %s (file %s) failed (attempt %s)", job_id, job.file_sha256, job.attempts)
        with ctx.session() as s:
            jobs.fail_job(s, job_id, message, final=final)
        raise
    crash_point("ingest.before_finish_job")
    with ctx.session() as s:
        jobs.finish_job(s, job_id, seconds=time.monotonic() - started)
    return result


def _layout(ctx: JobContext, sha256: str, key: str, kind: str, size: int, repo_id: int | None) -> FileLayout:
    """The file cut by the format upload sniffed (its id is the file's kind); a file that only looked
    like that format is kept as the bytes it is (blob), its kind corrected in the catalog. Either way a
    parser's refusal is logged once, with the file's sha256 and never its bytes (docs/format.md,
    "Hostile files"). A blob an ONNX model beside it names as external data is cut into its tensors."""
    limits = {"max_header_bytes": ctx.settings.max_header_bytes, "max_tensors": ctx.settings.max_header_tensors}
    if kind == BLOB and (external := external_data_layout(ctx, sha256, repo_id, size)) is not None:
        return external
    try:
        layout = read_staged_layout(ctx.store, key, kind, size, **limits)
    except InvalidInput as exc:
        # Bytes that no longer even look like what upload sniffed changed at rest: refuse them (final).
        if kind == BLOB or sniff_staged_format(ctx.store, key, size).format_id != kind:
            raise
        log.warning("file %s looked like %s but is not (%s): stored as a blob", sha256, kind, exc.message)
    else:
        if layout.opaque_because is not None:
            log.warning("file %s is %s, its content kept opaque (%s)", sha256, kind, layout.opaque_because)
        return layout
    with ctx.session() as s:
        files.set_kind(s, sha256, BLOB)
    return read_staged_layout(ctx.store, key, BLOB, size, **limits)


def ingest_file(ctx: JobContext, sha256: str, *, repo_id: int | None = None) -> IngestResult:
    with ctx.session() as s:
        snapshot = files.snapshot(s, sha256)
    if snapshot.staging_key is None:
        return _already_stored(ctx, snapshot, repo_id)
    # A stored file with a staged copy was found damaged and pushed again: it is repaired from the copy.
    repairing = snapshot.state == FileState.STORED
    started = time.monotonic()
    key, size = snapshot.staging_key, snapshot.size
    layout = _layout(ctx, sha256, key, snapshot.kind, size, repo_id)
    segments = layout.segments
    if repairing and snapshot.kind == BLOB:
        # A blob's cut is ours, not its content's (blobs stored before chunking are one segment):
        # repair it as it was stored.
        with ctx.session() as s:
            segments = tuple(opaque(seg.seq, seg.offset, seg.length) for seg in plans.segments(s, sha256))
    digests = hash_segments(ctx.store.iter_range(key, 0, size), segments, size, sha256)
    crash_point("ingest.after_hashing")
    if repairing:
        fixed = repair.repair_file(ctx, sha256, key, segments, digests, started=started)
        return IngestResult(sha256, FileState.STORED, new_tensors=fixed.tensors, encoded_bytes=fixed.encoded_bytes,
                            still_damaged=list(fixed.still_damaged))

    # Relatives wait for each other from choosing the base to the catalog commit (workers/jobs/family_lock.py).
    family = family_lease(ctx, fingerprint(layout.tensors), sha256) if layout.tensors is not None else nullcontext()
    with family:
        with ctx.session() as s:
            snapshot = files.snapshot(s, sha256)
        if snapshot.state == FileState.STORED:  # a second delivery of the job, done while we waited
            return _already_stored(ctx, snapshot, repo_id)
        started = time.monotonic()  # objects are written from here on: GC's grace counts from here
        base, sketch, near = None, None, None
        chosen_at = utcnow()
        if layout.tensors is not None:
            read = staged_reader(ctx.store, key)
            sketch = take_sketch(layout.tensors, read)
            near = neighbours(ctx, sha256, sketch) if sketch else None
            base = lineage.choose_base(ctx, sha256, layout, read, repo_id=repo_id, near=near)
        crash_point("ingest.after_choose_base")
        plan = encoding.plan_tensors(ctx, segments, digests, base)
        written = encoding.encode_and_write(ctx, key, plan)
        result = IngestResult(
            sha256,
            FileState.STORED,
            new_tensors=len(written.tensors),
            deduplicated_tensors=len(segments) - len(written.tensors),
            delta_tensors=sum(1 for t in written.tensors if t.base_id),
            raw_bytes=sum(t.nbytes for t in written.tensors),
            encoded_bytes=sum(f.object_length for t in written.tensors for f in t.frames),
            base_sha256=base.sha256 if base else None,
        )
        elapsed = time.monotonic() - started
        if elapsed > ctx.settings.gc_grace_seconds / 2:
            # GC may collect objects older than the grace period that the catalog does not know yet:
            # ours, if we committed now. Give up this attempt; the retry writes fresh objects.
            raise IngestAbandoned(
                detail=f"ingest of {sha256} ran {elapsed:.0f} s, more than half the GC grace period "
                f"({ctx.settings.gc_grace_seconds} s), so objects it wrote may already be collectable; "
                "retrying with fresh objects"
            )
        with ctx.session() as s:
            repaired = lineage.commit_file(s, sha256, segments, digests, written, layout=layout, base=base,
                                           sketch=sketch, max_depth=ctx.settings.max_chain_depth)
        crash_point("ingest.after_catalog_commit")
    ctx.store.delete(key)
    crash_point("ingest.after_staging_delete")
    if repaired:  # it held bytes of damaged tensors, coded again: whatever they broke may read again
        result.still_damaged = recheck(ctx, repaired)
    if layout.tensors is not None:
        result.rebased = lineage.rebase_dependents(ctx, sha256, repo_id=repo_id)
        if base is None:
            # After a repair, relatives refused as damaged at the choice may be whole now: look again at all.
            since = None if repaired else chosen_at
            result.base_sha256 = lineage.settle(ctx, sha256, repo_id=repo_id, chosen_at=since)
        if near is not None:
            adopted = lineage.adopt_relatives(ctx, sha256, near, base=result.base_sha256)
            result.rebased += [sha for sha in adopted if sha not in result.rebased]
    log.info("stored %s: %s", sha256, result)
    return result


def _already_stored(ctx: JobContext, snapshot: files.FileSnapshot, repo_id: int | None) -> IngestResult:
    done = IngestResult(snapshot.sha256, snapshot.state)
    if snapshot.state == FileState.STORED and parses_tensors(snapshot.kind):
        # A retry after a crash between the catalog commit and the rebase: the rebase is still owed.
        done.rebased = lineage.rebase_dependents(ctx, snapshot.sha256, repo_id=repo_id)
    return done
