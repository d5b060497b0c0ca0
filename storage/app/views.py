"""What the use cases hand out: frozen records of repositories, commits and files, never ORM rows.

The service, the CLI and the jobs see these and nothing of the catalog; the mappers from rows live here
and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from storage.catalog.models import Commit, FileObject, Ref, Repository
from storage.catalog.models import TreeEntry as TreeRow
from storage.catalog.plans import FileHead

FileStateName = Literal["staged", "stored", "failed"]
RepoTypeName = Literal["model", "dataset"]


@dataclass(frozen=True, slots=True)
class RepoInfo:
    id: int
    namespace: str
    name: str
    private: bool
    created_at: datetime
    repo_type: RepoTypeName = "model"

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class CommitInfo:
    oid: str
    parent_oid: str | None
    message: str
    author: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RefInfo:
    """A branch or a tag and the commit it names."""

    name: str
    kind: Literal["branch", "tag"]
    commit_oid: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RepoListing:
    """A repository as listings show it: with the head of its main branch (None before any commit)."""

    repo: RepoInfo
    head: CommitInfo | None
    # Logical bytes of the head's tree, when the listing asked for them.
    size: int | None = None


@dataclass(frozen=True, slots=True)
class FileInfo:
    sha256: str
    size: int
    # The file format the bytes were recognised as (storage/core/formats), "blob" for none.
    kind: str
    state: FileStateName
    error: str | None = None
    # The latest ingest job's state (queued, running, done, failed); None when none was queued. A file is
    # readable once "stored", but its job may still be rebasing relatives onto it.
    ingest: str | None = None


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    file: FileInfo
    # How git holds the file, as a clone sees it: an LFS pointer (True) or a blob of its bytes, and that
    # blob's git id (None: not known to the caller, e.g. a listing built without the catalog's entry).
    lfs: bool = True
    git_oid: str | None = None


@dataclass(frozen=True, slots=True)
class ReadSource:
    """Where a file's bytes come from, as one catalog look found them: its staged copy while it has one
    (waiting for ingest, or pushed again to repair it), else its stored frames through the plan `head`
    keys (storage/app/reader.py)."""

    head: FileHead
    staging_key: str | None
    staging_sums: bytes | None
    stored: bool

    @property
    def sha256(self) -> str:
        return self.head.sha256

    @property
    def size(self) -> int:
        return self.head.size


@dataclass(frozen=True, slots=True)
class LocatedFile:
    """What a download needs, found in one catalog session: the repository, the revision's commit and
    the file at the path (entry and source None when the commit has no such path)."""

    repo: RepoInfo
    commit: CommitInfo
    entry: TreeEntry | None
    source: ReadSource | None


@dataclass(frozen=True, slots=True)
class FileAddition:
    """A file a commit adds. `lfs` says whether git holds it as an LFS pointer (True: the client sent it
    as an lfsFile, False: inline); None leaves it to size (storage/app/commits.py INLINE_MAX_BYTES)."""

    path: str
    sha256: str
    lfs: bool | None = None


def repo_info(repo: Repository) -> RepoInfo:
    kind: RepoTypeName = "dataset" if repo.repo_type == "dataset" else "model"
    return RepoInfo(repo.id, repo.namespace, repo.name, repo.private, repo.created_at, kind)


def ref_info(ref: Ref) -> RefInfo:
    return RefInfo(ref.name, "tag" if ref.kind == "tag" else "branch", ref.commit_oid, ref.message)


def commit_info(commit: Commit) -> CommitInfo:
    return CommitInfo(commit.oid, commit.parent_oid, commit.message, commit.author, commit.created_at)


def tree_entry(row: TreeRow, file: FileObject) -> TreeEntry:
    return TreeEntry(row.path, file_info(file), lfs=row.lfs, git_oid=row.git_oid)


def file_info(file: FileObject, *, ingest: str | None = None) -> FileInfo:
    state: FileStateName = "stored" if file.state == "stored" else "failed" if file.state == "failed" else "staged"
    return FileInfo(file.sha256, file.size, str(file.kind), state, file.error, ingest)


def read_source(file: FileObject) -> ReadSource:
    head = FileHead(file.sha256, file.size, file.stored_at, file.plan_version)
    return ReadSource(head, file.staging_key, file.staging_sums, file.state == "stored")
