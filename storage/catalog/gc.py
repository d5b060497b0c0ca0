"""Catalog side of garbage collection: find and remove rows nothing references (docs/format.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from storage.catalog.models import (
    FileObject,
    FileSegment,
    Frame,
    IngestJob,
    JobState,
    StoreObject,
    Tensor,
    TreeEntry,
)


def drop_unreferenced_files(session: Session, cutoff: datetime) -> tuple[int, list[str]]:
    """Files no tree names, older than `cutoff`, with no unfinished job: (how many, their staging keys)."""
    rows = session.execute(
        select(FileObject.sha256, FileObject.staging_key).where(
            FileObject.created_at < cutoff,
            ~exists().where(TreeEntry.file_sha256 == FileObject.sha256),
            ~exists().where(
                IngestJob.file_sha256 == FileObject.sha256,
                IngestJob.state.in_((JobState.QUEUED, JobState.RUNNING)),
            ),
        )
    ).all()
    shas = [r[0] for r in rows]
    for start in range(0, len(shas), 500):
        chunk = shas[start : start + 500]
        # The file-level base is a record of lineage; the tensor-level bases are what keep data whole.
        session.execute(update(FileObject).where(FileObject.base_sha256.in_(chunk)).values(base_sha256=None))
        session.execute(delete(FileSegment).where(FileSegment.file_sha256.in_(chunk)))
        session.execute(delete(IngestJob).where(IngestJob.file_sha256.in_(chunk)))
        session.execute(delete(FileObject).where(FileObject.sha256.in_(chunk)))
    return len(shas), [r[1] for r in rows if r[1]]


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
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
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
    for start in range(0, len(keys), 500):
        session.execute(delete(StoreObject).where(StoreObject.key.in_(keys[start : start + 500])))
    return keys


def known_keys(session: Session) -> set[str]:
    """Every object key the catalog knows: store objects and staging keys."""
    keys = set(session.scalars(select(StoreObject.key)))
    keys.update(k for k in session.scalars(select(FileObject.staging_key)) if k)
    return keys
