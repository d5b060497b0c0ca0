"""Damage records: files and tensors `verify` found damaged (docs/reliability.md, "Repairing damaged data").

A damaged file counts as not held (uploads of its bytes are asked for) and a damaged tensor is neither a
dedup hit nor a delta base, until ingest of the same bytes has re-encoded it and the rebuilt data verifies.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from storage.catalog.db import batches
from storage.catalog.models import DamagedFile, DamagedTensor, FileObject, FileSegment, FileState, Tensor, utcnow


def is_damaged(session: Session, sha256: str) -> bool:
    return session.get(DamagedFile, sha256) is not None


def unheld(session: Session, shas: Iterable[str]) -> set[str]:
    """The files among `shas` whose bytes the hub cannot produce: damaged, and (for a stored file) no new
    upload of them staged yet; once one is, reads and dedup use that copy while ingest repairs the
    stored form. A damaged file that is not stored yet is its damaged staging copy."""
    found: set[str] = set()
    for chunk in batches(list(set(shas))):
        found.update(session.scalars(
            select(DamagedFile.sha256).join(FileObject, FileObject.sha256 == DamagedFile.sha256)
            .where(DamagedFile.sha256.in_(chunk),
                   or_(FileObject.staging_key.is_(None), FileObject.state != FileState.STORED))
        ))
    return found


def damaged_files(session: Session) -> dict[str, str]:
    """Every damaged file: sha256 → the error verify saw."""
    return {r.sha256: r.error for r in session.scalars(select(DamagedFile).order_by(DamagedFile.sha256))}


def damaged_tensors(session: Session, ids: Iterable[str] | None = None) -> set[str]:
    """The damaged tensors among `ids` (all of them when None)."""
    if ids is None:
        return set(session.scalars(select(DamagedTensor.tensor_id)))
    found: set[str] = set()
    for chunk in batches(list(set(ids))):
        found.update(session.scalars(select(DamagedTensor.tensor_id).where(DamagedTensor.tensor_id.in_(chunk))))
    return found


def record_file(session: Session, sha256: str, error: str) -> None:
    row = session.get(DamagedFile, sha256)
    if row is None:
        session.add(DamagedFile(sha256=sha256, error=error, found_at=utcnow()))
    else:
        row.error, row.found_at = error, utcnow()
    session.flush()


def record_tensor(session: Session, tensor_id: str, error: str) -> None:
    row = session.get(DamagedTensor, tensor_id)
    if row is None:
        session.add(DamagedTensor(tensor_id=tensor_id, error=error, found_at=utcnow()))
    else:
        row.error, row.found_at = error, utcnow()
    session.flush()


def clear_file(session: Session, sha256: str) -> None:
    session.execute(delete(DamagedFile).where(DamagedFile.sha256 == sha256))


def clear_tensors(session: Session, ids: Iterable[str]) -> None:
    for chunk in batches(list(set(ids))):
        session.execute(delete(DamagedTensor).where(DamagedTensor.tensor_id.in_(chunk)))


def dependents(session: Session, ids: Iterable[str]) -> set[str]:
    """Tensors delta-coded against any of `ids`, directly or through others (they cannot decode either)."""
    out: set[str] = set()
    frontier = list(set(ids))
    while frontier:
        found: list[str] = []
        for chunk in batches(frontier):
            found.extend(session.scalars(select(Tensor.id).where(Tensor.base_tensor_id.in_(chunk))))
        frontier = [t for t in found if t not in out]
        out.update(frontier)
    return out


def files_holding(session: Session, ids: Iterable[str]) -> set[str]:
    """Files with a segment whose bytes are one of the tensors `ids`."""
    found: set[str] = set()
    for chunk in batches(list(set(ids))):
        found.update(session.scalars(select(FileSegment.file_sha256).where(FileSegment.tensor_id.in_(chunk))))
    return found


def own_tensors(session: Session, sha256: str) -> set[str]:
    """The tensors the file's segments name."""
    return set(session.scalars(select(FileSegment.tensor_id).where(FileSegment.file_sha256 == sha256)))


def base_of(session: Session, tensor_id: str) -> str | None:
    return session.scalar(select(Tensor.base_tensor_id).where(Tensor.id == tensor_id))


def damaged_among(session: Session, shas: Iterable[str]) -> set[str]:
    """The files among `shas` recorded damaged (whether or not a repair is under way)."""
    found: set[str] = set()
    for chunk in batches(list(set(shas))):
        found.update(session.scalars(select(DamagedFile.sha256).where(DamagedFile.sha256.in_(chunk))))
    return found
