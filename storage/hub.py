"""The hub: one object the HTTP service, the CLI and the workers talk to.

It ties the catalog (repositories, commits, files), the object store (staging and packed frames) and the
ingest queue together. Routes and commands stay thin: they parse a request, call one method here and map
the result (or a DeltahubError) to a response.

Files are addressed by the SHA-256 of their bytes (the hub's LFS oid). A file is readable the moment its
upload completes: it is served from staging until ingest has stored it in reduced form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

FileState = Literal["staged", "stored", "failed"]


@dataclass(frozen=True, slots=True)
class RepoInfo:
    id: int
    namespace: str
    name: str
    private: bool
    created_at: datetime

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
class FileInfo:
    sha256: str
    size: int
    kind: Literal["safetensors", "blob"]
    state: FileState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    file: FileInfo


@dataclass(frozen=True, slots=True)
class FileAddition:
    path: str
    sha256: str


class IngestQueue(Protocol):
    """Where ingest jobs go: an in-process pool (embedded mode) or Celery (distributed)."""

    def enqueue(self, job_id: int) -> None: ...


class HubApi(Protocol):
    """What the service and CLI may call. `repo_id` is "namespace/name" (or a bare "name")."""

    # Repositories
    def create_repo(self, repo_id: str, *, private: bool = False, exist_ok: bool = False) -> RepoInfo: ...
    def get_repo(self, repo_id: str) -> RepoInfo: ...
    def list_repos(self) -> list[RepoInfo]: ...
    def delete_repo(self, repo_id: str) -> None: ...

    # Revisions and trees
    def resolve(self, repo_id: str, revision: str) -> CommitInfo:
        """A branch name or a full 40-hex commit id → the commit (RevisionNotFound otherwise)."""
        ...

    def list_branches(self, repo_id: str) -> dict[str, str]: ...
    def list_commits(self, repo_id: str, revision: str) -> list[CommitInfo]: ...
    def list_tree(self, repo_id: str, commit_oid: str) -> list[TreeEntry]:
        """Every file of the commit, sorted by path."""
        ...

    def get_entry(self, repo_id: str, commit_oid: str, path: str) -> TreeEntry:
        """One file of the commit (EntryNotFound otherwise)."""
        ...

    # Writes
    def has_file(self, sha256: str) -> bool:
        """True when the bytes are already held (staged or stored): the upload can be skipped."""
        ...

    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo:
        """Stream bytes to staging, hashing as they pass; UploadMismatch when size or hash differ."""
        ...

    def commit(
        self,
        repo_id: str,
        branch: str,
        *,
        message: str,
        additions: Sequence[FileAddition] = (),
        deletions: Sequence[str] = (),
        parent_oid: str | None = None,
        author: str | None = None,
        declared_base: str | None = None,
    ) -> CommitInfo:
        """A new commit on `branch` (created if absent). Every added sha256 must be held already.

        Queues ingest for the files that are still staged; `declared_base` ("namespace/name") is the
        uploader's claim of the base model, a hint that ingest checks.
        """
        ...

    # Reads
    def file_info(self, sha256: str) -> FileInfo: ...
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a file, streamed, from staging or rebuilt from stored frames."""
        ...

    def stats(self) -> dict[str, object]:
        """Storage accounting: logical vs physical bytes, savings by source, per repository and family."""
        ...
