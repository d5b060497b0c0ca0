"""The hub: one object the HTTP service, the CLI and the workers talk to.

It ties the catalog (repositories, commits, files), the object store (staging and packed frames) and the
ingest queue together. Routes and commands stay thin: they parse a request, call one method here and map
the result (or a DeltahubError) to a response.

Files are addressed by the SHA-256 of their bytes (the hub's LFS oid). A file is readable the moment its
upload completes: it is served from staging until ingest has stored it in reduced form.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from storage.app.reader import Reader
from storage.app.staging import detect_staged_format, read_staged_layout, stage
from storage.catalog import jobs, repos
from storage.catalog.accounting import storage_report
from storage.catalog.db import make_engine, session_factory, session_scope, unique_conflicts, upgrade
from storage.catalog.models import Commit, FileObject, FileState, Repository
from storage.core.declared import base_from_config, base_from_model_card
from storage.core.errors import Conflict, FileNotStored, InvalidInput, RepoExists
from storage.core.faults import crash_point
from storage.core.formats.safetensors import FORMAT_ID as SAFETENSORS
from storage.core.names import check_branch, check_path, check_sha256, is_commit_oid
from storage.objectstore import ObjectNotFound, ObjectStore
from storage.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

FileStateName = Literal["staged", "stored", "failed"]

# Decoded frames kept for reuse: a base's frames are read once per fine-tune frame that needs them;
# 256 MiB holds 64 default-size frames, one model layer's worth for 7B-class models.
FRAME_CACHE_BYTES = 256 << 20


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
    kind: str  # the id of the file format that parsed it (storage/core/formats/registry.py)
    state: FileStateName
    error: str | None = None
    # The latest ingest job's state (queued, running, done, failed); None when none was queued. A file is
    # readable once "stored", but its job may still be rebasing relatives onto it.
    ingest: str | None = None


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

    def set_private(self, repo_id: str, private: bool) -> RepoInfo: ...
    def health(self) -> dict[str, bool]:
        """Whether the catalog and the object store answer."""
        ...


class Hub:
    """The concrete hub over a SQL catalog and an object store (see HubApi for the contract)."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        store: ObjectStore | None = None,
        queue: IngestQueue | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self.sessions = session_factory(self.engine)
        self.store = store or open_store(settings)
        # No queue: jobs are recorded and left for someone to run (tests, `admin ingest`).
        self.queue = queue
        self.reader = Reader(self.store, self.sessions, cache_bytes=FRAME_CACHE_BYTES)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = False) -> Hub:
        if migrate:
            upgrade(settings.resolved_database_url)
        return cls(settings)

    def session(self) -> AbstractContextManager[Session]:
        return session_scope(self.sessions)

    # Repositories

    def create_repo(self, repo_id: str, *, private: bool = False, exist_ok: bool = False) -> RepoInfo:
        try:
            with self.session() as s:
                return _repo_info(repos.create_repo(s, repo_id, private=private))
        except RepoExists:
            if not exist_ok:
                raise
            return self.get_repo(repo_id)

    def get_repo(self, repo_id: str) -> RepoInfo:
        with self.session() as s:
            return _repo_info(repos.find_repo(s, repo_id))

    def list_repos(self) -> list[RepoInfo]:
        with self.session() as s:
            return [_repo_info(r) for r in repos.list_repos(s)]

    def set_private(self, repo_id: str, private: bool) -> RepoInfo:
        with self.session() as s:
            repo = repos.find_repo(s, repo_id)
            repo.private = private
            return _repo_info(repo)

    def delete_repo(self, repo_id: str) -> None:
        with self.session() as s:
            repos.delete_repo(s, repos.find_repo(s, repo_id))

    # Revisions and trees

    def resolve(self, repo_id: str, revision: str) -> CommitInfo:
        with self.session() as s:
            return _commit_info(repos.resolve(s, repos.find_repo(s, repo_id), repo_id, revision))

    def list_branches(self, repo_id: str) -> dict[str, str]:
        with self.session() as s:
            return repos.branches(s, repos.find_repo(s, repo_id))

    def list_commits(self, repo_id: str, revision: str) -> list[CommitInfo]:
        with self.session() as s:
            head = repos.resolve(s, repos.find_repo(s, repo_id), repo_id, revision)
            return [_commit_info(c) for c in repos.history(s, head)]

    def list_tree(self, repo_id: str, commit_oid: str) -> list[TreeEntry]:
        with self.session() as s:
            return [TreeEntry(path, _file_info(f)) for path, f in repos.tree(s, commit_oid)]

    def get_entry(self, repo_id: str, commit_oid: str, path: str) -> TreeEntry:
        with self.session() as s:
            return TreeEntry(path, _file_info(repos.entry(s, repo_id, commit_oid, path)))

    # Writes

    def has_file(self, sha256: str) -> bool:
        with self.session() as s:
            return s.get(FileObject, check_sha256(sha256)) is not None

    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo:
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
            if self.has_file(expected_sha256):
                # Drain nothing: the caller's body is dropped; the bytes are already held.
                return self.file_info(expected_sha256)
        staged = stage(
            self.store,
            chunks,
            expected_sha256=expected_sha256,
            expected_size=expected_size,
            max_bytes=self.settings.max_upload_bytes,
        )
        fmt = detect_staged_format(self.store, staged.key, staged.size, self.settings.max_header_bytes)
        crash_point("upload.before_file_row")
        created = False
        try:
            with self.session() as s, unique_conflicts("file uploaded concurrently"):
                if s.get(FileObject, staged.sha256) is None:
                    s.add(
                        FileObject(
                            sha256=staged.sha256, size=staged.size, kind=fmt.format_id,
                            state=FileState.STAGED, staging_key=staged.key,
                        )
                    )
                    s.flush()
                    created = True
        except Conflict:
            created = False  # an identical upload won the race: keep theirs
        finally:
            if not created:
                self.store.delete(staged.key)
        crash_point("upload.after_file_row")
        return self.file_info(staged.sha256)

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
        check_branch(branch)
        for path in [a.path for a in additions] + list(deletions):
            check_path(path.rstrip("/") if path.endswith("/") else path)
        if parent_oid is not None and not is_commit_oid(parent_oid):
            raise InvalidInput(detail=f"parent commit {parent_oid!r} is not a 40-hex commit id")
        declared_base = declared_base or self._declared_base(additions)
        crash_point("commit.before_transaction")
        with self.session() as s:
            repo = repos.find_repo(s, repo_id)
            head = repos.branch_head(s, repo, branch)
            files = repos.tree_files(s, head.oid) if head else {}
            added: list[tuple[str, str]] = []
            for addition in additions:
                file = s.get(FileObject, check_sha256(addition.sha256))
                if file is None:
                    raise FileNotStored(sha256=addition.sha256)
                if addition.path.endswith(".safetensors") and file.kind != SAFETENSORS:
                    self._explain_bad_safetensors(file)
                if declared_base and file.kind == SAFETENSORS and file.declared_base is None:
                    file.declared_base = declared_base
                added.append((addition.path, addition.sha256))
            repos.apply_changes(files, added, deletions)
            commit = repos.new_commit(
                s, repo, branch, files=files, message=message, author=author,
                parent=head, expected_parent=parent_oid,
            )
            job_ids = jobs.queue_ingest(s, repo.id, added)
            info = _commit_info(commit)
            crash_point("commit.in_transaction")
        crash_point("commit.after_transaction")
        for job_id in job_ids:
            if self.queue is not None:
                self.queue.enqueue(job_id)
        return info

    def _explain_bad_safetensors(self, file: FileObject) -> None:
        """A .safetensors path whose bytes do not parse: say why (SafetensorsError, a 400)."""
        if file.staging_key is None:
            raise InvalidInput(detail=f"file {file.sha256} is not a safetensors file")
        read_staged_layout(self.store, file.staging_key, SAFETENSORS, file.size, self.settings.max_header_bytes)
        raise InvalidInput(detail=f"file {file.sha256} is not a safetensors file")

    def _declared_base(self, additions: Sequence[FileAddition]) -> str | None:
        """The base an upload claims, from the model card or config.json in the same commit."""
        by_name = {a.path.rsplit("/", 1)[-1]: a.sha256 for a in additions}
        for name, parse in (("README.md", base_from_model_card), ("config.json", base_from_config)):
            sha = by_name.get(name)
            if sha is None:
                continue
            info = self.file_info(sha)
            if info.size > 1 << 20:
                continue
            claim = parse(b"".join(self.read(sha)))
            if claim:
                return claim
        return None

    # Reads

    def file_info(self, sha256: str) -> FileInfo:
        with self.session() as s:
            file = s.get(FileObject, check_sha256(sha256))
            if file is None:
                raise FileNotStored(sha256=sha256)
            history = jobs.jobs_for_file(s, sha256)
            info = _file_info(file)
            return replace(info, ingest=history[-1].state if history else None)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.session() as s:
            file = s.get(FileObject, check_sha256(sha256))
            if file is None:
                raise FileNotStored(sha256=sha256)
            state, staging_key, size = file.state, file.staging_key, file.size
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(detail=f"invalid byte range [{start}, {end})")
        # Like a slice: a range running past the end is cut at the end (the HTTP layer answers 416).
        end = size if end is None else min(end, size)
        start = min(start, end)
        if state != FileState.STORED and staging_key is not None:
            try:
                return self.store.iter_range(staging_key, start, end)
            except ObjectNotFound:
                # Ingest stored the file and dropped its staging copy between our look and the read.
                if self.file_info(sha256).state != FileState.STORED:
                    raise
        return self.reader.read_file(sha256, start, end)

    def stats(self) -> dict[str, object]:
        with self.session() as s:
            return storage_report(s)

    def health(self) -> dict[str, bool]:
        return {"catalog": _answers(lambda: self.has_file("0" * 64)),
                "store": _answers(lambda: self.store.head("health/probe"))}


def _answers(probe: Callable[[], object]) -> bool:
    try:
        probe()
    except Exception:
        log.warning("health probe failed", exc_info=True)
        return False
    return True


def _repo_info(repo: Repository) -> RepoInfo:
    return RepoInfo(repo.id, repo.namespace, repo.name, repo.private, repo.created_at)


def _commit_info(commit: Commit) -> CommitInfo:
    return CommitInfo(commit.oid, commit.parent_oid, commit.message, commit.author, commit.created_at)


def _file_info(file: FileObject) -> FileInfo:
    return FileInfo(file.sha256, file.size, file.kind, file.state, file.error)  # type: ignore[arg-type]


def open_store(settings: Settings, **s3_options: Any) -> ObjectStore:
    """The object store the settings name: a local directory (embedded) or an S3 bucket.

    `s3_options` pass on to the S3 client (timeouts, attempts), for callers that need them tighter.
    """
    if settings.store_backend == "s3":
        from storage.objectstore.s3 import S3ObjectStore

        secret = settings.s3_secret_access_key
        return S3ObjectStore(
            settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            **s3_options,
        )
    from storage.objectstore.local import LocalObjectStore

    return LocalObjectStore(settings.resolved_store_dir)
