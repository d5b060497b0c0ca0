"""Catalog queries and writes for stored files, tensors, frames and families (used by ingest and GC)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy.exc
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from storage.catalog import damage, plans
from storage.catalog.db import batches, is_unique_violation
from storage.catalog.models import (
    DamagedFile,
    Family,
    FileObject,
    FileSegment,
    FileState,
    Frame,
    Repository,
    StoreObject,
    Tensor,
    utcnow,
)
from storage.catalog.plans import TensorPlan
from storage.core.errors import FileNotStored


@dataclass(frozen=True, slots=True)
class FileSnapshot:
    sha256: str
    size: int
    kind: str
    state: str
    staging_key: str | None
    declared_base: str | None
    fingerprint: str | None
    base_sha256: str | None


@dataclass(frozen=True, slots=True)
class NewObject:
    key: str
    size: int
    kind: str


@dataclass
class Written:
    """What an ingest (or a rebase) wrote to the store and must now record."""

    tensors: list[TensorPlan] = field(default_factory=list)
    objects: list[NewObject] = field(default_factory=list)


def snapshot(session: Session, sha256: str) -> FileSnapshot:
    f = session.get(FileObject, sha256)
    if f is None:
        raise FileNotStored(sha256=sha256)
    return FileSnapshot(f.sha256, f.size, f.kind, f.state, f.staging_key, f.declared_base, f.fingerprint,
                        f.base_sha256)


def set_kind(session: Session, sha256: str, kind: str) -> None:
    """Correct the format a staged file was sniffed as (ingest found it is not that format)."""
    session.execute(update(FileObject).where(FileObject.sha256 == sha256).values(kind=kind))


def existing_tensors(session: Session, ids: Iterable[str]) -> set[str]:
    ids = list(set(ids))
    found: set[str] = set()
    for chunk in batches(ids):
        found.update(session.scalars(select(Tensor.id).where(Tensor.id.in_(chunk))))
    return found


def family_members(
    session: Session, fingerprint: str, *, exclude: str, limit: int, stored_after: datetime | None = None
) -> list[FileSnapshot]:
    """Stored files with this fingerprint (stored after `stored_after`), most recent first. Only files of
    a format that parses tensors have a fingerprint."""
    query = select(FileObject).where(
        FileObject.fingerprint == fingerprint,
        FileObject.state == FileState.STORED,
        FileObject.sha256 != exclude,
    )
    query = query.where(~exists().where(DamagedFile.sha256 == FileObject.sha256))  # never a damaged base
    if stored_after is not None:
        query = query.where(FileObject.stored_at >= stored_after)
    rows = session.scalars(query.order_by(FileObject.stored_at.desc()).limit(limit))
    return [snapshot(session, f.sha256) for f in rows]


def repo_name(session: Session, repo_id: int | None) -> str | None:
    repo = session.get(Repository, repo_id) if repo_id is not None else None
    if repo is None:
        return None
    return f"{repo.namespace}/{repo.name}" if repo.namespace else repo.name


def files_declaring(session: Session, fingerprint: str, declared: str) -> list[FileSnapshot]:
    rows = session.scalars(
        select(FileObject.sha256).where(
            FileObject.fingerprint == fingerprint,
            FileObject.declared_base == declared,
            FileObject.state == FileState.STORED,
        )
    )
    return [snapshot(session, sha) for sha in rows]


def record_written(session: Session, written: Written, *, max_depth: int | None = None) -> set[str]:
    """Store objects, then tensors and their frames, skipping what a concurrent ingest recorded first.

    With `max_depth`, a tensor stored already but recorded damaged takes the new encoding (its dependents
    decode again: they need its bytes, which are the same); returns the ids so re-encoded."""
    damaged = damage.damaged_tensors(session, [t.id for t in written.tensors]) if max_depth is not None else set()
    repaired: set[str] = set()
    for obj in written.objects:
        if session.get(StoreObject, obj.key) is None:
            session.add(StoreObject(key=obj.key, size=obj.size, kind=obj.kind))
    session.flush()
    for t in written.tensors:
        if session.get(Tensor, t.id) is not None:
            if t.id in damaged and max_depth is not None and replace_encoding(session, t, max_depth=max_depth):
                repaired.add(t.id)
            continue  # stored meanwhile by another file's ingest; our frames become garbage for GC
        try:
            # A savepoint: a concurrent ingest may insert the same tensor between the check and here.
            with session.begin_nested():
                session.add(
                    Tensor(id=t.id, dtype=t.dtype, shape=list(t.shape), nbytes=t.nbytes, base_tensor_id=t.base_id,
                           chain_depth=t.chain_depth)
                )
                session.flush()
                session.add_all(
                    Frame(tensor_id=t.id, seq=f.seq, raw_offset=f.raw_offset, raw_length=f.raw_length,
                          object_key=f.object_key, object_offset=f.object_offset, object_length=f.object_length,
                          checksum=f.checksum)
                    for f in t.frames
                )
                session.flush()
        except sqlalchemy.exc.IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
    session.flush()
    return repaired


def drop_staging(session: Session, sha256: str) -> None:
    """A repaired stored file no longer needs the staged copy it was repaired from (deleted next)."""
    session.execute(update(FileObject).where(FileObject.sha256 == sha256, FileObject.state == FileState.STORED)
                    .values(staging_key=None, staging_sums=None))


def mark_stored(
    session: Session,
    sha256: str,
    segments: Sequence[tuple[int, int, int, str, str | None]],
    *,
    fingerprint: str | None,
    base_sha256: str | None,
) -> None:
    """The file's segments (seq, offset, length, tensor id, name) and its new state, family and base."""
    file = session.get(FileObject, sha256)
    if file is None:
        raise FileNotStored(sha256=sha256)
    if file.state == FileState.STORED:
        return
    session.add_all(
        FileSegment(file_sha256=sha256, seq=seq, offset=offset, length=length, tensor_id=tensor_id, name=name)
        for seq, offset, length, tensor_id, name in segments
    )
    if fingerprint is not None:
        family = session.scalar(select(Family).where(Family.fingerprint == fingerprint).order_by(Family.id).limit(1))
        if family is None:
            family = Family(fingerprint=fingerprint, root_sha256=sha256)
            session.add(family)
            session.flush()
        file.family_id = family.id
        file.fingerprint = fingerprint
    file.base_sha256 = base_sha256
    file.state = FileState.STORED
    file.staging_key = None
    file.staging_sums = None
    file.error = None
    file.stored_at = utcnow()
    session.flush()


def tensor_dependents(session: Session, tensor_id: str) -> list[tuple[str, int]]:
    """Tensors delta-coded against `tensor_id`, directly or through others: (id, chain depth)."""
    out: list[tuple[str, int]] = []
    frontier = [tensor_id]
    while frontier:
        rows = session.execute(
            select(Tensor.id, Tensor.chain_depth).where(Tensor.base_tensor_id.in_(frontier))
        ).all()
        out.extend((r[0], r[1]) for r in rows)
        frontier = [r[0] for r in rows]
    return out


def lock_family(session: Session, fingerprint: str | None) -> None:
    """Serialise base changes within one family (row lock on PostgreSQL; SQLite has one writer anyway)."""
    if fingerprint is not None:
        session.scalars(select(Family.id).where(Family.fingerprint == fingerprint).with_for_update()).all()


def replace_encoding(session: Session, new: TensorPlan, *, max_depth: int) -> bool:
    """Swap a tensor's base and frames for a new encoding of the same bytes (a rebase).

    Checked again here, inside the transaction, against the catalog as it is now (a concurrent rebase
    may have moved things since the encoding was planned): the base's chain must not pass through this
    tensor (no cycles), and this tensor's dependents must stay within `max_depth`. Returns whether the
    swap was made.
    """
    tensor = session.get(Tensor, new.id, with_for_update=True)
    base = session.get(Tensor, new.base_id) if new.base_id else None
    if tensor is None or (new.base_id and base is None):
        return False
    if base is not None and _chain_contains(session, base, tensor.id):
        return False
    depth = base.chain_depth + 1 if base is not None else 0
    dependents = tensor_dependents(session, tensor.id)
    shift = depth - tensor.chain_depth
    if max((d for _, d in dependents), default=depth) + shift > max_depth or depth > max_depth:
        return False
    old_keys = set()
    for frame in session.scalars(select(Frame).where(Frame.tensor_id == new.id)):
        old_keys.add(frame.object_key)
        session.delete(frame)
    session.flush()
    # Readers that planned before this swap may still fetch the old frames: give them a grace period.
    session.execute(update(StoreObject).where(StoreObject.key.in_(old_keys)).values(created_at=utcnow()))
    tensor.base_tensor_id, tensor.chain_depth = new.base_id, depth
    session.add_all(
        Frame(tensor_id=new.id, seq=f.seq, raw_offset=f.raw_offset, raw_length=f.raw_length,
              object_key=f.object_key, object_offset=f.object_offset, object_length=f.object_length,
              checksum=f.checksum)
        for f in new.frames
    )
    if shift:
        for dep_id, dep_depth in dependents:
            dep = session.get(Tensor, dep_id)
            if dep is not None:
                dep.chain_depth = dep_depth + shift
    # Files holding this tensor, or one coded against it, read through the old encoding: new plans.
    plans.bump_plan_versions(session, [new.id, *(dep_id for dep_id, _ in dependents)])
    session.flush()
    return True


def _chain_contains(session: Session, start: Tensor, needle: str) -> bool:
    current: Tensor | None = start
    while current is not None:
        if current.id == needle:
            return True
        current = session.get(Tensor, current.base_tensor_id) if current.base_tensor_id else None
    return False


def set_file_base(session: Session, sha256: str, base_sha256: str | None) -> None:
    file = session.get(FileObject, sha256)
    if file is not None:
        file.base_sha256 = base_sha256


def stored_among(session: Session, sha256s: Sequence[str]) -> set[str]:
    """Which of `sha256s` are stored files (the hot-file cache keeps copies of those only)."""
    found: set[str] = set()
    for chunk in batches(sorted(set(sha256s))):
        rows = session.scalars(
            select(FileObject.sha256).where(FileObject.sha256.in_(chunk), FileObject.state == FileState.STORED)
        )
        found.update(rows)
    return found


def sizes(session: Session, sha256s: Sequence[str]) -> dict[str, int]:
    """The size of each of `sha256s` the catalog has a file row for (in any state)."""
    found: dict[str, int] = {}
    for chunk in batches(sorted(set(sha256s))):
        rows = session.execute(select(FileObject.sha256, FileObject.size).where(FileObject.sha256.in_(chunk)))
        found.update((sha, size) for sha, size in rows)
    return found


def existing(session: Session, sha256s: Sequence[str]) -> set[str]:
    """Which of `sha256s` the catalog has a file row for (in any state)."""
    return set(sizes(session, sha256s))


def claim(session: Session, sha256s: Iterable[str], at: datetime) -> None:
    """Restart the GC grace period of these files (an uploader was told they are held)."""
    for chunk in batches(sorted(set(sha256s))):
        session.execute(update(FileObject).where(FileObject.sha256.in_(chunk)).values(claimed_at=at))
