"""Catalog queries for repositories, commits, branches and trees."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from storage.catalog.models import Commit, FileObject, Ref, Repository, TreeEntry, utcnow
from storage.core.errors import EntryNotFound, RepoExists, RepoNotFound, RevisionNotFound, StaleParent
from storage.core.names import is_commit_oid, split_repo_id


def create_repo(session: Session, repo_id: str, *, private: bool) -> Repository:
    namespace, name = split_repo_id(repo_id)
    repo = Repository(namespace=namespace, name=name, private=private)
    session.add(repo)
    try:
        session.flush()
    except SAIntegrityError as exc:
        raise RepoExists(repo_id=repo_id) from exc
    return repo


def find_repo(session: Session, repo_id: str) -> Repository:
    namespace, name = split_repo_id(repo_id)
    repo = session.scalar(select(Repository).where(Repository.namespace == namespace, Repository.name == name))
    if repo is None:
        raise RepoNotFound(repo_id=repo_id)
    return repo


def list_repos(session: Session) -> list[Repository]:
    return list(session.scalars(select(Repository).order_by(Repository.namespace, Repository.name)))


def delete_repo(session: Session, repo: Repository) -> None:
    """Remove a repository with its branches, commits and trees; its files are left to GC."""
    session.execute(delete(Ref).where(Ref.repo_id == repo.id))
    commit_oids = select(Commit.oid).where(Commit.repo_id == repo.id)
    session.execute(delete(TreeEntry).where(TreeEntry.commit_oid.in_(commit_oids)))
    session.execute(update(Commit).where(Commit.repo_id == repo.id).values(parent_oid=None))
    session.execute(delete(Commit).where(Commit.repo_id == repo.id))
    session.delete(repo)
    session.flush()


def branches(session: Session, repo: Repository) -> dict[str, str]:
    rows = session.execute(select(Ref.name, Ref.commit_oid).where(Ref.repo_id == repo.id).order_by(Ref.name))
    return {name: oid for name, oid in rows}


def resolve(session: Session, repo: Repository, repo_id: str, revision: str) -> Commit:
    """A branch name, or a full commit id of this repository."""
    oid = session.scalar(select(Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.name == revision))
    if oid is None and is_commit_oid(revision):
        oid = revision
    commit = session.get(Commit, oid) if oid else None
    if commit is None or commit.repo_id != repo.id:
        raise RevisionNotFound(repo_id=repo_id, revision=revision)
    return commit


def history(session: Session, commit: Commit, limit: int = 1000) -> list[Commit]:
    out = [commit]
    while out[-1].parent_oid and len(out) < limit:
        parent = session.get(Commit, out[-1].parent_oid)
        if parent is None:
            break
        out.append(parent)
    return out


def tree(session: Session, repo: Repository, commit_oid: str) -> list[tuple[str, FileObject]]:
    """Every file of a commit of `repo` (none for a commit of another repository)."""
    rows = session.execute(
        select(TreeEntry.path, FileObject)
        .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
        .join(Commit, Commit.oid == TreeEntry.commit_oid)
        .where(TreeEntry.commit_oid == commit_oid, Commit.repo_id == repo.id)
        .order_by(TreeEntry.path)
    )
    return [(path, file) for path, file in rows]


def entry(session: Session, repo: Repository, repo_id: str, commit_oid: str, path: str) -> FileObject:
    file = session.scalar(
        select(FileObject)
        .join(TreeEntry, FileObject.sha256 == TreeEntry.file_sha256)
        .join(Commit, Commit.oid == TreeEntry.commit_oid)
        .where(TreeEntry.commit_oid == commit_oid, TreeEntry.path == path, Commit.repo_id == repo.id)
    )
    if file is None:
        raise EntryNotFound(repo_id=repo_id, revision=commit_oid, path=path)
    return file


def new_commit(
    session: Session,
    repo: Repository,
    branch: str,
    *,
    files: Mapping[str, str],
    message: str,
    author: str | None,
    parent: Commit | None,
    expected_parent: str | None,
) -> Commit:
    """Write a commit with the full tree `files` (path → sha256) and move `branch` to it.

    The branch moves by compare-and-swap on its old head, so two writers racing on one branch cannot
    lose a commit: the loser gets StaleParent and may retry on the new head.
    """
    head = parent.oid if parent else None
    if expected_parent is not None and expected_parent != head:
        raise StaleParent(branch=branch, expected=expected_parent, head=head)
    seed = f"{repo.id}\0{branch}\0{head}\0{message}\0{utcnow().isoformat()}".encode() + os.urandom(16)
    oid = hashlib.sha1(seed, usedforsecurity=False).hexdigest()
    session.add(Commit(oid=oid, repo_id=repo.id, parent_oid=head, message=message, author=author))
    session.flush()
    session.add_all(TreeEntry(commit_oid=oid, path=path, file_sha256=sha) for path, sha in sorted(files.items()))
    if head is None:
        session.add(Ref(repo_id=repo.id, name=branch, commit_oid=oid))
        try:
            session.flush()
        except SAIntegrityError as exc:
            raise StaleParent(branch=branch, expected=None, head="(created concurrently)") from exc
    else:
        moved = session.execute(
            update(Ref)
            .where(Ref.repo_id == repo.id, Ref.name == branch, Ref.commit_oid == head)
            .values(commit_oid=oid)
        )
        if cast("CursorResult[Any]", moved).rowcount != 1:
            raise StaleParent(branch=branch, expected=head, head="(moved concurrently)")
    session.flush()
    commit = session.get(Commit, oid)
    assert commit is not None
    return commit


def branch_head(session: Session, repo: Repository, branch: str) -> Commit | None:
    oid = session.scalar(select(Ref.commit_oid).where(Ref.repo_id == repo.id, Ref.name == branch))
    return session.get(Commit, oid) if oid else None


def tree_files(session: Session, commit_oid: str) -> dict[str, str]:
    rows = session.execute(select(TreeEntry.path, TreeEntry.file_sha256).where(TreeEntry.commit_oid == commit_oid))
    return {path: sha for path, sha in rows}


def apply_changes(files: dict[str, str], additions: Sequence[tuple[str, str]], deletions: Sequence[str]) -> None:
    """Deleting "dir/" or a folder name removes everything under it, as the hub's deletedFolder does."""
    for path in deletions:
        folder = path.rstrip("/") + "/"
        for existing in [p for p in files if p == path or p.startswith(folder)]:
            del files[existing]
    for path, sha in additions:
        files[path] = sha


def all_file_shas(session: Session) -> list[str]:
    return list(session.scalars(select(FileObject.sha256).order_by(FileObject.sha256)))


def locations(session: Session, sha256: str) -> list[tuple[str, str]]:
    """Every (repository, path) that names the file in some commit."""
    rows = session.execute(
        select(Repository.namespace, Repository.name, TreeEntry.path)
        .join(Commit, Commit.oid == TreeEntry.commit_oid)
        .join(Repository, Repository.id == Commit.repo_id)
        .where(TreeEntry.file_sha256 == sha256)
        .distinct()
    )
    return sorted((f"{ns}/{name}" if ns else name, path) for ns, name, path in rows)
