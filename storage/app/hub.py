"""The hub: the one facade the HTTP service and the CLI talk to.

It owns the adapters (the SQL catalog, the object store, the ingest queue, the reconstruction reader)
and delegates each call to the use case it belongs to (storage/app/uploads.py, commits.py, reads.py,
repositories.py). Routes and commands stay thin: they parse a request, call one method here and map the
result (or a DeltahubError) to a response. The jobs (workers/jobs) see the same object through the
narrow `JobContext` they declare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from storage.app.browse import Browse
from storage.app.commits import Commits
from storage.app.git_http import GitHttp
from storage.app.git_objects import GitObjects
from storage.app.git_push import GitPush
from storage.app.grants import FileHolders, Grants
from storage.app.hotfiles import HotCopy, HotFiles
from storage.app.mirror import Mirror, MirrorStatus
from storage.app.ports import IngestQueue
from storage.app.quotas import Quotas
from storage.app.reader import Reader
from storage.app.reads import Reads
from storage.app.refs import Refs
from storage.app.repositories import RepoQuery, Repositories
from storage.app.uploads import Uploads
from storage.app.views import (
    CommitInfo,
    FileAddition,
    FileInfo,
    LocatedFile,
    ReadSource,
    RefInfo,
    RepoInfo,
    RepoListing,
    TreeEntry,
)
from storage.app.xet_uploads import XetUploads
from storage.catalog.accounting import storage_report
from storage.catalog.db import make_engine, session_factory, session_scope, upgrade
from storage.objectstore import ObjectStore, open_store
from storage.settings import Settings
from storage.upstream import open_upstream

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# Decoded frames kept for reuse: a base's frames are read once per fine-tune frame that needs them;
# 256 MiB holds 64 default-size frames, one model layer's worth for 7B-class models.
FRAME_CACHE_BYTES = 256 << 20

# A SHA-256 no upload can have: looking it up touches the catalog and nothing else.
_PROBE_SHA256 = "0" * 64


class HubApi(Protocol):
    """What the service and CLI may call. `repo_id` is "namespace/name" (or a bare "name"); `repo_type`
    is "model" (the default) or "dataset", and a model and a dataset may share a repo_id."""

    # Read-only views for the web pages and metrics (storage/app/browse.py)
    browse: Browse
    # Logical bytes per namespace against its quota (storage/app/quotas.py)
    quotas: Quotas
    # git over smart HTTP: clone, fetch and push (storage/app/git_http.py)
    git: GitHttp

    # The pull-through mirror (storage/app/mirror.py): None from pull when it has no say
    def pull(
        self, repo_id: str, revision: str, *, repo_type: str = "model", may_read_private: bool = False
    ) -> MirrorStatus | None: ...
    def mirrored_from(self, repo_id: str, *, repo_type: str = "model") -> str | None: ...

    # Repositories (storage/app/repositories.py)
    def create_repo(
        self, repo_id: str, *, private: bool = False, exist_ok: bool = False, repo_type: str = "model",
        author: str | None = None,
    ) -> RepoInfo: ...
    def get_repo(self, repo_id: str, *, repo_type: str = "model") -> RepoInfo: ...
    def list_repos(self) -> list[RepoInfo]: ...
    def search_repos(self, query: RepoQuery, *, offset: int = 0, limit: int = 100) -> list[RepoListing]: ...
    def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None: ...
    def set_private(self, repo_id: str, private: bool, *, repo_type: str = "model") -> RepoInfo: ...
    def move_repo(self, from_id: str, to_id: str, *, repo_type: str = "model") -> RepoInfo: ...
    def moved_to(self, repo_id: str, *, repo_type: str = "model") -> RepoInfo | None: ...
    def resolve(self, repo_id: str, revision: str, *, repo_type: str = "model") -> CommitInfo: ...
    def list_branches(self, repo_id: str, *, repo_type: str = "model") -> dict[str, str]: ...
    def list_commits(self, repo_id: str, revision: str, *, repo_type: str = "model") -> list[CommitInfo]: ...
    def list_tree(self, repo_id: str, commit_oid: str, *, repo_type: str = "model") -> list[TreeEntry]: ...
    def last_changes(
        self, repo_id: str, commit_oid: str, paths: Sequence[str], *, repo_type: str = "model"
    ) -> dict[str, CommitInfo]: ...
    def get_entry(self, repo_id: str, commit_oid: str, path: str, *, repo_type: str = "model") -> TreeEntry: ...
    def locate(
        self, repo_id: str, revision: str, path: str, *, repo_type: str = "model",
        may_read: Callable[[RepoInfo], bool],
    ) -> LocatedFile: ...
    def locate_object(
        self, repo_id: str, sha256: str, *, repo_type: str = "model", may_read: Callable[[RepoInfo], bool]
    ) -> ReadSource | None: ...
    def object_sizes(
        self, repo_id: str, sha256s: Sequence[str], *, repo_type: str = "model",
        may_read: Callable[[RepoInfo], bool],
    ) -> tuple[RepoInfo, dict[str, int]]: ...

    # Branches and tags (storage/app/refs.py)
    def list_refs(self, repo_id: str, *, repo_type: str = "model") -> list[RefInfo]: ...
    def create_branch(
        self, repo_id: str, branch: str, *, revision: str | None = None, repo_type: str = "model"
    ) -> RefInfo: ...
    def delete_branch(self, repo_id: str, branch: str, *, repo_type: str = "model") -> None: ...
    def create_tag(
        self, repo_id: str, tag: str, *, revision: str | None = None, message: str | None = None,
        repo_type: str = "model",
    ) -> RefInfo: ...
    def delete_tag(self, repo_id: str, tag: str, *, repo_type: str = "model") -> None: ...

    # Uploads and commits (storage/app/uploads.py, commits.py)
    def has_file(self, sha256: str) -> bool: ...
    def claim_held(self, sha256s: Iterable[str]) -> set[str]: ...
    def file_sizes(self, sha256s: Iterable[str]) -> dict[str, int]: ...
    def unheld(self, sha256s: Iterable[str]) -> set[str]: ...
    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo: ...
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
        repo_type: str = "model",
    ) -> CommitInfo: ...

    # Who holds a file by right (storage/app/grants.py): repositories naming it, uploads recorded for one
    def file_holders(self, sha256s: Iterable[str]) -> dict[str, FileHolders]: ...
    def grant_uploads(self, repo_id: str, sha256s: Iterable[str], *, repo_type: str = "model") -> None: ...

    # Reads (storage/app/reads.py)
    def file_info(self, sha256: str) -> FileInfo: ...
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def read_from(self, source: ReadSource, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def hot_copy(self, source: ReadSource) -> HotCopy | None: ...

    # Xet uploads (storage/app/xet_uploads.py): xorbs and shards in, files staged as by an LFS upload
    @property
    def xet(self) -> XetUploads: ...

    # Operations
    def stats(self) -> dict[str, object]:
        """Storage accounting: logical vs physical bytes, savings by source, per repository and family."""
        ...

    def health(self) -> dict[str, bool]:
        """Whether the catalog and the object store answer."""
        ...


class Hub:
    """The concrete hub over a SQL catalog and an object store (see HubApi for the contract).

    `queue` takes the ingest jobs a commit queues; `queue_for` builds one that needs the hub itself
    (the in-process pool runs jobs against it). With neither, jobs are recorded and left for someone to
    run (tests, `admin requeue`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        store: ObjectStore | None = None,
        queue: IngestQueue | None = None,
        queue_for: Callable[[Hub], IngestQueue] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.resolved_database_url)
        self.sessions = session_factory(self.engine)
        self.store = store or open_store(settings)
        self.reader = Reader(self.store, self.sessions, cache_bytes=FRAME_CACHE_BYTES)
        self.queue = queue_for(self) if queue_for is not None else queue
        self.uploads = Uploads(settings, self.session, self.store, self._enqueue)
        self.repositories = Repositories(self.session, self.uploads, self._enqueue)
        self.refs = Refs(self.session)
        hot = HotFiles(settings.resolved_hot_cache_dir, settings.hot_cache_bytes, settings.hot_cache_reads)
        self.reads = Reads(self.session, self.store, self.reader, hot)
        self.commits = Commits(self.session, self.uploads, self.reads.read, self._enqueue)
        # The Xet protocol's front door to the same uploads (storage/app/xet_uploads.py).
        self.xet = XetUploads(self.store, self.session, self, max_file_bytes=settings.max_upload_bytes)
        self.browse = Browse(self.session, self.reads.read)
        self.mirror = Mirror(settings, self.session, self.uploads, open_upstream(settings), self._enqueue)
        self.quotas = Quotas(self.session)
        self.git = GitHttp(
            GitObjects(self.session, self.reads.read), GitPush(self.session, self.uploads, self.quotas, self._enqueue)
        )
        self.grants = Grants(self.session)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, migrate: bool = False, queue_for: Callable[[Hub], IngestQueue] | None = None
    ) -> Hub:
        if migrate:
            upgrade(settings.resolved_database_url)
        return cls(settings, queue_for=queue_for)

    def session(self) -> AbstractContextManager[Session]:
        return session_scope(self.sessions)

    def _enqueue(self, job_id: int) -> None:
        if self.queue is not None:
            self.queue.enqueue(job_id)

    def close(self) -> None:
        """Stop the queue (running in-process jobs finish) and release the catalog's connections."""
        if self.queue is not None:
            self.queue.close()
        self.mirror.close()
        self.engine.dispose()

    # The mirror

    def pull(
        self, repo_id: str, revision: str, *, repo_type: str = "model", may_read_private: bool = False
    ) -> MirrorStatus | None:
        return self.mirror.pull(repo_id, revision, repo_type=repo_type, may_read_private=may_read_private)

    def mirrored_from(self, repo_id: str, *, repo_type: str = "model") -> str | None:
        return self.mirror.mirrored_from(repo_id, repo_type=repo_type)

    # Repositories

    def create_repo(
        self, repo_id: str, *, private: bool = False, exist_ok: bool = False, repo_type: str = "model",
        author: str | None = None,
    ) -> RepoInfo:
        return self.repositories.create_repo(
            repo_id, private=private, exist_ok=exist_ok, repo_type=repo_type, author=author
        )

    def get_repo(self, repo_id: str, *, repo_type: str = "model") -> RepoInfo:
        return self.repositories.get_repo(repo_id, repo_type=repo_type)

    def list_repos(self) -> list[RepoInfo]:
        return self.repositories.list_repos()

    def search_repos(self, query: RepoQuery, *, offset: int = 0, limit: int = 100) -> list[RepoListing]:
        return self.repositories.search_repos(query, offset=offset, limit=limit)

    def set_private(self, repo_id: str, private: bool, *, repo_type: str = "model") -> RepoInfo:
        return self.repositories.set_private(repo_id, private, repo_type=repo_type)

    def move_repo(self, from_id: str, to_id: str, *, repo_type: str = "model") -> RepoInfo:
        return self.repositories.move_repo(from_id, to_id, repo_type=repo_type)

    def moved_to(self, repo_id: str, *, repo_type: str = "model") -> RepoInfo | None:
        return self.repositories.moved_to(repo_id, repo_type=repo_type)

    def delete_repo(self, repo_id: str, *, repo_type: str = "model") -> None:
        self.repositories.delete_repo(repo_id, repo_type=repo_type)

    def resolve(self, repo_id: str, revision: str, *, repo_type: str = "model") -> CommitInfo:
        return self.repositories.resolve(repo_id, revision, repo_type=repo_type)

    def list_branches(self, repo_id: str, *, repo_type: str = "model") -> dict[str, str]:
        return self.repositories.list_branches(repo_id, repo_type=repo_type)

    def list_commits(self, repo_id: str, revision: str, *, repo_type: str = "model") -> list[CommitInfo]:
        return self.repositories.list_commits(repo_id, revision, repo_type=repo_type)

    def list_tree(self, repo_id: str, commit_oid: str, *, repo_type: str = "model") -> list[TreeEntry]:
        return self.repositories.list_tree(repo_id, commit_oid, repo_type=repo_type)

    def last_changes(
        self, repo_id: str, commit_oid: str, paths: Sequence[str], *, repo_type: str = "model"
    ) -> dict[str, CommitInfo]:
        return self.repositories.last_changes(repo_id, commit_oid, paths, repo_type=repo_type)

    def get_entry(self, repo_id: str, commit_oid: str, path: str, *, repo_type: str = "model") -> TreeEntry:
        return self.repositories.get_entry(repo_id, commit_oid, path, repo_type=repo_type)

    def locate(
        self, repo_id: str, revision: str, path: str, *, repo_type: str = "model",
        may_read: Callable[[RepoInfo], bool],
    ) -> LocatedFile:
        return self.repositories.locate(repo_id, revision, path, repo_type=repo_type, may_read=may_read)

    def locate_object(
        self, repo_id: str, sha256: str, *, repo_type: str = "model", may_read: Callable[[RepoInfo], bool]
    ) -> ReadSource | None:
        return self.repositories.locate_object(repo_id, sha256, repo_type=repo_type, may_read=may_read)

    def object_sizes(
        self, repo_id: str, sha256s: Sequence[str], *, repo_type: str = "model",
        may_read: Callable[[RepoInfo], bool],
    ) -> tuple[RepoInfo, dict[str, int]]:
        return self.repositories.object_sizes(repo_id, sha256s, repo_type=repo_type, may_read=may_read)

    # Branches and tags

    def list_refs(self, repo_id: str, *, repo_type: str = "model") -> list[RefInfo]:
        return self.refs.list_refs(repo_id, repo_type=repo_type)

    def create_branch(
        self, repo_id: str, branch: str, *, revision: str | None = None, repo_type: str = "model"
    ) -> RefInfo:
        return self.refs.create_branch(repo_id, branch, revision=revision, repo_type=repo_type)

    def delete_branch(self, repo_id: str, branch: str, *, repo_type: str = "model") -> None:
        self.refs.delete_branch(repo_id, branch, repo_type=repo_type)

    def create_tag(
        self, repo_id: str, tag: str, *, revision: str | None = None, message: str | None = None,
        repo_type: str = "model",
    ) -> RefInfo:
        return self.refs.create_tag(repo_id, tag, revision=revision, message=message, repo_type=repo_type)

    def delete_tag(self, repo_id: str, tag: str, *, repo_type: str = "model") -> None:
        self.refs.delete_tag(repo_id, tag, repo_type=repo_type)

    # Uploads and commits

    def adopt(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None,
        expected_size: int,
        claim: Callable[[Session, str], bool],
    ) -> FileInfo | None:
        """A file staged from an object the Xet uploads wrote (storage/app/uploads.py, `adopt`)."""
        return self.uploads.adopt(
            key, chunks, expected_sha256=expected_sha256, expected_size=expected_size, claim=claim
        )

    def has_file(self, sha256: str) -> bool:
        return self.uploads.has_file(sha256)

    def claim_held(self, sha256s: Iterable[str]) -> set[str]:
        return self.uploads.claim_held(sha256s)

    def file_sizes(self, sha256s: Iterable[str]) -> dict[str, int]:
        return self.uploads.file_sizes(sha256s)

    def unheld(self, sha256s: Iterable[str]) -> set[str]:
        return self.uploads.unheld(sha256s)

    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo:
        return self.uploads.upload(chunks, expected_sha256=expected_sha256, expected_size=expected_size)

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
        repo_type: str = "model",
    ) -> CommitInfo:
        return self.commits.commit(
            repo_id, branch, message=message, additions=additions, deletions=deletions,
            parent_oid=parent_oid, author=author, declared_base=declared_base, repo_type=repo_type,
        )

    # Who holds a file by right

    def file_holders(self, sha256s: Iterable[str]) -> dict[str, FileHolders]:
        return self.grants.holders(sha256s)

    def grant_uploads(self, repo_id: str, sha256s: Iterable[str], *, repo_type: str = "model") -> None:
        self.grants.grant(repo_id, sha256s, repo_type=repo_type)

    # Reads

    def file_info(self, sha256: str) -> FileInfo:
        return self.uploads.file_info(sha256)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.reads.read(sha256, start, end)

    def read_from(self, source: ReadSource, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.reads.read_from(source, start, end)

    def hot_copy(self, source: ReadSource) -> HotCopy | None:
        return self.reads.hot_copy(source)

    def forget_files(self, sha256s: Iterable[str]) -> None:
        """Delete the hot copies of files the catalog dropped (GC, through JobContext)."""
        for sha256 in sha256s:
            self.reads.hot.drop(sha256)

    # Operations

    def stats(self) -> dict[str, object]:
        with self.session() as s:
            return storage_report(s)

    def health(self) -> dict[str, bool]:
        return {"catalog": _answers(lambda: self.has_file(_PROBE_SHA256)),
                "store": _answers(lambda: self.store.head("health/probe"))}


def _answers(probe: Callable[[], object]) -> bool:
    try:
        probe()
    except Exception:
        log.warning("health probe failed", exc_info=True)
        return False
    return True
