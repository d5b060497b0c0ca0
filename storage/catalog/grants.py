"""Catalog queries behind "who may name a file by its hash": the repositories whose history names a
file, and those its bytes were uploaded for (upload grants)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from storage.catalog.db import unique_conflicts
from storage.catalog.models import FileObject, Repository, TreeEntry, UploadGrant
from storage.core.errors import Conflict


def repos_naming(session: Session, sha256: str) -> list[Repository]:
    """Repositories with a commit whose tree holds the file (any commit: old revisions stay readable)."""
    named = (
        exists()
        .where(TreeEntry.file_sha256 == sha256, TreeEntry.repo_id == Repository.id)
    )
    return list(session.scalars(select(Repository).where(named).order_by(Repository.id)))


def repos_granted(session: Session, sha256: str) -> list[Repository]:
    """Repositories the file's bytes were uploaded for."""
    query = select(Repository).join(UploadGrant, UploadGrant.repo_id == Repository.id)
    return list(session.scalars(query.where(UploadGrant.file_sha256 == sha256).order_by(Repository.id)))


def add_grants(session: Session, repo: Repository, sha256s: Iterable[str]) -> None:
    """Record that each file's bytes were uploaded for `repo` (files the hub does not hold are skipped)."""
    for sha256 in dict.fromkeys(sha256s):
        if session.get(UploadGrant, (sha256, repo.id)) is not None or session.get(FileObject, sha256) is None:
            continue
        try:
            with unique_conflicts("upload granted concurrently"), session.begin_nested():
                session.add(UploadGrant(file_sha256=sha256, repo_id=repo.id))
        except Conflict:
            pass  # the same grant, recorded by a concurrent upload
