"""Catalog queries behind "who may name a file by its hash": the repositories whose history names a
file, and those its bytes were uploaded for (upload grants)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.catalog.db import batches, unique_conflicts
from storage.catalog.models import FileObject, Repository, TreeEntry, UploadGrant
from storage.core.errors import Conflict


def repos_naming(session: Session, sha256s: Sequence[str]) -> dict[str, list[Repository]]:
    """For each file, the repositories with a commit whose tree holds it (any commit: old revisions stay
    readable), in id order; a file no tree names is left out."""
    naming: dict[str, list[Repository]] = {}
    for chunk in batches(sorted(set(sha256s))):
        pairs = (
            select(TreeEntry.file_sha256, TreeEntry.repo_id).distinct()
            .where(TreeEntry.file_sha256.in_(chunk)).subquery("naming")
        )
        rows = session.execute(
            select(pairs.c.file_sha256, Repository).join(pairs, pairs.c.repo_id == Repository.id)
            .order_by(pairs.c.file_sha256, Repository.id)
        )
        for sha256, repo in rows:
            naming.setdefault(sha256, []).append(repo)
    return naming


def repos_granted(session: Session, sha256s: Sequence[str]) -> dict[str, list[Repository]]:
    """For each file, the repositories its bytes were uploaded for, in id order; a file with no grant is
    left out."""
    granted: dict[str, list[Repository]] = {}
    for chunk in batches(sorted(set(sha256s))):
        rows = session.execute(
            select(UploadGrant.file_sha256, Repository).join(UploadGrant, UploadGrant.repo_id == Repository.id)
            .where(UploadGrant.file_sha256.in_(chunk)).order_by(UploadGrant.file_sha256, Repository.id)
        )
        for sha256, repo in rows:
            granted.setdefault(sha256, []).append(repo)
    return granted


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
