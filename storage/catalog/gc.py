"""Catalog side of garbage collection: find and remove rows nothing references (docs/format.md)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from storage.catalog.db import batches
from storage.catalog.models import (
    FileObject,
    FileSegment,
    Frame,
    IngestJob,
    JobState,
    StoreObject,
    StoreObjectKind,
    Tensor,
    TreeEntry,
    utcnow,
)


def drop_unreferenced_files(session: Session, cutoff: datetime) -> tuple[list[str], list[str]]:
    """Files no tree names, older than `cutoff`, with no unfinished job: (their ids, their staging keys)."""
    rows = session.execute(
        select(FileObject.sha256, FileObject.staging_key).where(
            func.coalesce(FileObject.claimed_at, FileObject.created_at) < cutoff,
            ~exists().where(TreeEntry.file_sha256 == FileObject.sha256),
            ~exists().where(
                IngestJob.file_sha256 == FileObject.sha256,
                IngestJob.state.in_((JobState.QUEUED, JobState.RUNNING)),
            ),
        )
    ).all()
    shas = [r[0] for r in rows]
    for chunk in batches(shas):
        # The file-level base is a record of lineage; the tensor-level bases are what keep data whole.
        session.execute(update(FileObject).where(FileObject.base_sha256.in_(chunk)).values(base_sha256=None))
        session.execute(delete(FileSegment).where(FileSegment.file_sha256.in_(chunk)))
        session.execute(delete(IngestJob).where(IngestJob.file_sha256.in_(chunk)))
        session.execute(delete(FileObject).where(FileObject.sha256.in_(chunk)))
    return shas, [r[1] for r in rows if r[1]]


def drop_unreferenced_tensors(session: Session) -> int:
    """Tensors no segment and no other tensor needs, repeated as bases free up; returns how many."""
    total = 0
    while True:
        base_of = select(Tensor.base_tensor_id).where(Tensor.base_tensor_id.is_not(None)).scalar_subquery()
        ids = list(
            session.scalars(
                select(Tensor.id).where(
                    ~exists().where(FileSegment.tensor_id == Tensor.id),
                    Tensor.id.not_in(base_of),
                )
            )
        )
        if not ids:
            return total
        for chunk in batches(ids):
            session.execute(delete(Frame).where(Frame.tensor_id.in_(chunk)))
            session.execute(delete(Tensor).where(Tensor.id.in_(chunk)))
        session.flush()
        total += len(ids)


def drop_unreferenced_objects(session: Session, cutoff: datetime) -> list[str]:
    """Store-object rows no frame points at, older than `cutoff`; returns their keys (to delete next)."""
    keys = list(
        session.scalars(
            select(StoreObject.key).where(
                StoreObject.created_at < cutoff, ~exists().where(Frame.object_key == StoreObject.key)
            )
        )
    )
    for chunk in batches(keys):
        session.execute(delete(StoreObject).where(StoreObject.key.in_(chunk)))
    return keys


def known_keys(session: Session) -> set[str]:
    """Every object key the catalog knows: store objects and staging keys."""
    keys = set(session.scalars(select(StoreObject.key)))
    keys.update(k for k in session.scalars(select(FileObject.staging_key)) if k)
    return keys


def sparse_packs(session: Session, cutoff: datetime, max_live_fraction: float) -> list[str]:
    """Packs older than `cutoff` whose referenced frames fill less than `max_live_fraction` of them
    (frames left behind by rebases): worth rewriting with only their live frames."""
    live = (
        select(Frame.object_key, func.sum(Frame.object_length).label("live"))
        .group_by(Frame.object_key)
        .subquery()
    )
    rows = session.execute(
        select(StoreObject.key)
        .join(live, live.c.object_key == StoreObject.key)
        .where(
            StoreObject.kind == StoreObjectKind.PACK,
            StoreObject.created_at < cutoff,
            live.c.live < StoreObject.size * max_live_fraction,
        )
        .order_by(StoreObject.key)
    )
    return list(rows.scalars())


def live_frames(session: Session, key: str) -> list[tuple[str, int, int, int]]:
    """(tensor id, seq, offset, length) of the frames stored in object `key`."""
    rows = session.execute(
        select(Frame.tensor_id, Frame.seq, Frame.object_offset, Frame.object_length)
        .where(Frame.object_key == key)
        .order_by(Frame.object_offset)
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def move_frames(
    session: Session, old_key: str, new_key: str, new_size: int, moves: list[tuple[str, int, int, int]]
) -> int:
    """Point frames (tensor id, seq, old offset, new offset) from `old_key` at `new_key`, where they
    still point at the old place; returns how many moved. The old object's clock restarts, so GC keeps
    it for a full grace period for readers that planned before the move."""
    session.add(StoreObject(key=new_key, size=new_size, kind=StoreObjectKind.PACK))
    session.flush()
    moved = 0
    for tensor_id, seq, old_offset, new_offset in moves:
        result = session.execute(
            update(Frame)
            .where(Frame.tensor_id == tensor_id, Frame.seq == seq, Frame.object_key == old_key,
                   Frame.object_offset == old_offset)
            .values(object_key=new_key, object_offset=new_offset)
        )
        moved += cast("CursorResult[Any]", result).rowcount
    touch_objects(session, [old_key])
    return moved


def touch_objects(session: Session, keys: list[str]) -> None:
    """Restart the GC clock of objects that just lost references (a reader may still hold a plan)."""
    if keys:
        session.execute(update(StoreObject).where(StoreObject.key.in_(keys)).values(created_at=utcnow()))


def clocks(session: Session, keys: list[str]) -> list[datetime]:
    """When the GC clock of each of `keys` that the catalog knows started: a store object's created_at
    (restarted when it loses references), a staged upload's file created_at (for `admin gc`, to say when
    what the grace period holds becomes collectable)."""
    found: list[datetime] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found += session.scalars(select(StoreObject.created_at).where(StoreObject.key.in_(chunk)))
        found += session.scalars(select(FileObject.created_at).where(FileObject.staging_key.in_(chunk)))
    return found
