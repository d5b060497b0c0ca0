"""Catalog queries behind model-level family matching: which stored models could be a new file's base.

A model is the weight files of one directory of one revision (a sharded checkpoint is several files,
joined by its `*.index.json`). Candidates are found by content, not only by an exact fingerprint: files
holding tensors of the same byte sizes as the new file's largest ones (a size is dtype and shape, so a
renamed, re-headed or resharded fine-tune still shares most of them); the measurement decides.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from storage.catalog.models import Commit, DamagedFile, FileObject, FileSegment, FileState, Tensor, TreeEntry


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The stored weight files of one directory of one revision, and the shard indexes beside them."""

    weights: tuple[tuple[str, str], ...]  # (path, sha256), by path
    indexes: tuple[tuple[str, str], ...]  # (path, sha256) of `*.index.json` files, by path


def files_with_sizes(
    session: Session,
    sizes: Sequence[int],
    *,
    exclude: str,
    limit: int,
    stored_after: datetime | None = None,
) -> list[str]:
    """Stored tensor files holding tensors of these byte sizes: those holding the most distinct sizes
    first, then the most recent."""
    if not sizes:
        return []
    matched = func.count(func.distinct(Tensor.nbytes))
    query = (
        select(FileSegment.file_sha256)
        .join(Tensor, Tensor.id == FileSegment.tensor_id)
        .join(FileObject, FileObject.sha256 == FileSegment.file_sha256)
        .where(
            Tensor.nbytes.in_(sorted(set(sizes))),
            FileObject.state == FileState.STORED,
            FileObject.fingerprint.is_not(None),  # only formats that parse tensors have one
            FileObject.sha256 != exclude,
        )
        .group_by(FileSegment.file_sha256)
        .order_by(matched.desc(), func.max(FileObject.stored_at).desc(), FileSegment.file_sha256)
        .limit(limit)
    )
    if stored_after is not None:
        query = query.where(FileObject.stored_at >= stored_after)
    return list(session.scalars(query))


def model_of(session: Session, sha256: str) -> ModelFiles:
    """The model `sha256` belongs to: the stored tensor files in its directory of the latest commit
    holding it (just itself when no commit holds it)."""
    latest = session.execute(
        select(Commit, TreeEntry.path)
        .join(Commit, (Commit.repo_id == TreeEntry.repo_id) & (Commit.oid == TreeEntry.commit_oid))
        .where(TreeEntry.file_sha256 == sha256)
        .order_by(Commit.created_at.desc(), TreeEntry.repo_id, TreeEntry.commit_oid, TreeEntry.path)
        .limit(1)
    ).first()
    if latest is None:
        return ModelFiles(((sha256, sha256),), ())
    return directory_files(session, latest[0], posixpath.dirname(latest[1]))


def directory_files(session: Session, commit: Commit, directory: str) -> ModelFiles:
    rows = session.execute(
        select(TreeEntry.path, FileObject.sha256, FileObject.fingerprint)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == commit.repo_id, TreeEntry.commit_oid == commit.oid,
               FileObject.state == FileState.STORED)
        .order_by(TreeEntry.path)
    )
    weights, indexes = [], []
    for path, sha, fingerprint in rows:
        if posixpath.dirname(path) != directory:
            continue
        if fingerprint is not None:
            weights.append((path, sha))
        elif path.endswith(".index.json"):
            indexes.append((path, sha))
    return ModelFiles(tuple(weights), tuple(indexes))


def model_directories(session: Session, commit: Commit) -> list[str]:
    """Directories of a revision holding stored tensor files."""
    rows = session.scalars(
        select(TreeEntry.path)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == commit.repo_id, TreeEntry.commit_oid == commit.oid,
               FileObject.state == FileState.STORED,
               FileObject.fingerprint.is_not(None))
    )  # fmt: skip
    return sorted({posixpath.dirname(p) for p in rows})


def files_declaring(session: Session, declared: str) -> list[str]:
    """Stored tensor files whose upload named `declared` as their base (any architecture)."""
    return list(
        session.scalars(
            select(FileObject.sha256).where(
                FileObject.declared_base == declared,
                FileObject.state == FileState.STORED,
                FileObject.fingerprint.is_not(None),
                # A damaged file cannot be read to be rebased; a push of its bytes repairs it first.
                ~exists().where(DamagedFile.sha256 == FileObject.sha256),
            ).order_by(FileObject.sha256)
        )
    )


def files_beside(session: Session, sha256: str, repo_id: int, kind: str) -> tuple[str, list[tuple[str, str]]] | None:
    """The path of `sha256` in the latest commit of repository `repo_id` holding it, and the (path,
    sha256) of the files of format `kind` in the same directory of that commit; None when no commit of
    the repository holds it."""
    latest = session.execute(
        select(Commit, TreeEntry.path)
        .join(Commit, (Commit.repo_id == TreeEntry.repo_id) & (Commit.oid == TreeEntry.commit_oid))
        .where(TreeEntry.repo_id == repo_id, TreeEntry.file_sha256 == sha256)
        .order_by(Commit.created_at.desc(), TreeEntry.commit_oid, TreeEntry.path)
        .limit(1)
    ).first()
    if latest is None:
        return None
    commit, path = latest
    rows = session.execute(
        select(TreeEntry.path, TreeEntry.file_sha256)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == repo_id, TreeEntry.commit_oid == commit.oid, FileObject.kind == kind)
        .order_by(TreeEntry.path)
    )
    folder = posixpath.dirname(path)
    return path, [(p, sha) for p, sha in rows if posixpath.dirname(p) == folder]
