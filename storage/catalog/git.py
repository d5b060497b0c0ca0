"""Catalog queries behind git over HTTP: every commit of a repository with its tree, in one pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.catalog.db import batches
from storage.catalog.models import Commit, FileObject, Ref, Repository, TreeEntry


@dataclass(frozen=True, slots=True)
class GitEntry:
    path: str
    lfs: bool
    git_oid: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class GitCommitRow:
    oid: str
    parent_oid: str | None
    git_author: str
    git_committer: str
    message: str
    entries: tuple[GitEntry, ...]


def repo_commits(session: Session, repo: Repository) -> list[GitCommitRow]:
    """Every commit of `repo` with its full tree (path order), in no particular commit order."""
    commits = list(session.scalars(select(Commit).where(Commit.repo_id == repo.id)))
    entries: dict[str, list[GitEntry]] = {c.oid: [] for c in commits}
    rows = session.execute(
        select(TreeEntry.commit_oid, TreeEntry.path, TreeEntry.lfs, TreeEntry.git_oid, FileObject.sha256,
               FileObject.size)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == repo.id)
        .order_by(TreeEntry.commit_oid, TreeEntry.path)
    )
    for oid, path, lfs, git_oid, sha, size in rows:
        entries[oid].append(GitEntry(path, lfs, git_oid, sha, size))
    return [
        GitCommitRow(c.oid, c.parent_oid, c.git_author, c.git_committer, c.message, tuple(entries[c.oid]))
        for c in commits
    ]


def repo_refs(session: Session, repo: Repository) -> list[tuple[str, str, str]]:
    """(name, kind, commit id) of every branch and tag."""
    rows = session.execute(select(Ref.name, Ref.kind, Ref.commit_oid).where(Ref.repo_id == repo.id))
    return [(name, kind, oid) for name, kind, oid in rows]


def repo_holds_commit(session: Session, repo: Repository, oid: str) -> bool:
    return session.get(Commit, (repo.id, oid)) is not None


def repo_file(session: Session, repo: Repository, sha256: str) -> FileObject | None:
    """The file with this content if a commit of `repo` names it (an LFS download may be served)."""
    return session.scalar(
        select(FileObject)
        .join(TreeEntry, TreeEntry.file_sha256 == FileObject.sha256)
        .where(TreeEntry.repo_id == repo.id, FileObject.sha256 == sha256)
        .limit(1)
    )


def repo_file_sizes(session: Session, repo: Repository, sha256s: Sequence[str]) -> dict[str, int]:
    """The size of each of these contents that a commit of `repo` names (a git-lfs batch may offer their
    downloads); contents no commit names are left out."""
    sizes: dict[str, int] = {}
    for ids in batches(sorted(set(sha256s))):
        rows = session.execute(
            select(FileObject.sha256, FileObject.size)
            .where(FileObject.sha256.in_(ids))
            .where(select(TreeEntry.path).where(TreeEntry.repo_id == repo.id,
                                                TreeEntry.file_sha256 == FileObject.sha256).exists())
        )
        sizes.update((sha, size) for sha, size in rows)
    return sizes
