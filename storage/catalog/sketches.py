"""Catalog side of base choice at scale: model sketches by layout, and the per-family ingest lock.

Sketches (storage/core/sketches.py) are recorded with the file at ingest and read back a layout at a
time: one indexed query of a few KB per stored relative, ranked in numpy by the caller.

The family lock is a lease row, not a held transaction, so it works the same on SQLite (one writer,
where a transaction held through an encode would stall every other commit) and PostgreSQL, and across
processes: whoever inserts the row ingests; the others wait for it to go. A lease older than
`stale_before` (its holder renews it while it works) belongs to an ingest that died and is taken over,
and so is one held by an earlier attempt at the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.catalog.models import Family, FamilyIngest, FileObject, FileSegment, FileSketch, FileState, Tensor, utcnow


def record_sketch(session: Session, sha256: str, layout: str, sketch: bytes) -> None:
    if session.get(FileSketch, sha256) is None:
        session.add(FileSketch(file_sha256=sha256, layout=layout, sketch=sketch))
        session.flush()


def file_sketch(session: Session, sha256: str) -> tuple[str, bytes] | None:
    row = session.get(FileSketch, sha256)
    return (row.layout, row.sketch) if row is not None else None


def sketches_and_bases(
    session: Session, layout: str, *, exclude: str, stored_after: datetime | None = None
) -> list[tuple[str, bytes, str | None]]:
    """(sha256, sketch, base sha256) of the stored files whose sketch has this layout (stored after
    `stored_after`), in sha256 order."""
    query = (
        select(FileSketch.file_sha256, FileSketch.sketch, FileObject.base_sha256)
        .join(FileObject, FileObject.sha256 == FileSketch.file_sha256)
        .where(FileSketch.layout == layout, FileObject.state == FileState.STORED, FileObject.sha256 != exclude)
        .order_by(FileSketch.file_sha256)
    )
    if stored_after is not None:
        query = query.where(FileObject.stored_at >= stored_after)
    return [(sha, bytes(sketch), base) for sha, sketch, base in session.execute(query)]


def chain_depths(session: Session, shas: Sequence[str]) -> dict[str, int]:
    """The deepest chain among each file's tensors (0: all coded alone or deduplicated against roots)."""
    if not shas:
        return {}
    rows = session.execute(
        select(FileSegment.file_sha256, func.max(Tensor.chain_depth))
        .join(Tensor, Tensor.id == FileSegment.tensor_id)
        .where(FileSegment.file_sha256.in_(sorted(set(shas))))
        .group_by(FileSegment.file_sha256)
    )
    return {sha: int(depth or 0) for sha, depth in rows}


def family_root(session: Session, fingerprint: str) -> str | None:
    """The first stored file of the family with this fingerprint (kept as the family's root)."""
    root = session.scalar(select(Family.root_sha256).where(Family.fingerprint == fingerprint)
                          .order_by(Family.id).limit(1))  # fmt: skip
    if root is None:
        return None
    state = session.scalar(select(FileObject.state).where(FileObject.sha256 == root))
    return root if state == FileState.STORED else None


def take_family(session: Session, fingerprint: str, owner: str, *, stale_before: datetime) -> bool:
    """Whether `owner` now holds the family's ingest lease (taken fresh, already its, or taken over from
    a holder whose lease began before `stale_before`)."""
    row = session.get(FamilyIngest, fingerprint, populate_existing=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(FamilyIngest(fingerprint=fingerprint, owner=owner, taken_at=utcnow()))
        except IntegrityError:  # another ingest inserted it first
            return False
        return True
    if row.owner == owner:
        return True
    # An owner is "<file sha256>:<attempt>": a later attempt at the same file takes over at once.
    same_file = row.owner.split(":", 1)[0] == owner.split(":", 1)[0]
    if row.taken_at >= stale_before and not same_file:
        return False
    taken = session.execute(
        update(FamilyIngest)
        .where(FamilyIngest.fingerprint == fingerprint, FamilyIngest.owner == row.owner,
               FamilyIngest.taken_at == row.taken_at)
        .values(owner=owner, taken_at=utcnow())
    )  # fmt: skip
    return cast("CursorResult[Any]", taken).rowcount == 1


def renew_family(session: Session, fingerprint: str, owner: str) -> None:
    session.execute(update(FamilyIngest).where(FamilyIngest.fingerprint == fingerprint, FamilyIngest.owner == owner)
                    .values(taken_at=utcnow()))  # fmt: skip


def release_family(session: Session, fingerprint: str, owner: str) -> None:
    session.execute(delete(FamilyIngest).where(FamilyIngest.fingerprint == fingerprint, FamilyIngest.owner == owner))
