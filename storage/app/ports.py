"""The interfaces the use cases are written against; adapters (catalog sessions, object stores, the
in-process pool, Celery) implement them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from storage.core.upstream import UpstreamFile, UpstreamRevision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class IngestQueue(Protocol):
    """Where ingest jobs go: an in-process pool (embedded mode) or Celery (distributed)."""

    def enqueue(self, job_id: int) -> None:
        """Hand the job to a worker; never raises for a worker's failure (the catalog records it)."""
        ...

    def wait(self, timeout: float | None = None) -> None:
        """Block until every job enqueued here so far has ended (done or failed); TimeoutError after
        `timeout` seconds."""
        ...

    def close(self) -> None:
        """Stop taking jobs; running jobs finish (in-process) or stay on the broker (Celery)."""
        ...


class Sessions(Protocol):
    """A unit of work on the catalog: commits on success, rolls back on any error."""

    def __call__(self) -> AbstractContextManager[Session]: ...


class Upstream(Protocol):
    """The hub a pull-through mirror fetches from (storage/upstream/ speaks the Hub API to it).

    Raises UpstreamUnavailable when it cannot be reached, RepoNotFound / RevisionNotFound for what it
    does not have (or will not show), UpstreamError for an answer that makes no sense."""

    def revision(self, repo_type: str, repo_id: str, revision: str) -> UpstreamRevision:
        """The commit a revision names there, what kind of name it is, and the commit's files."""
        ...

    def download(self, repo_type: str, repo_id: str, commit: str, file: UpstreamFile) -> Iterator[bytes]:
        """The file's bytes, resumed across breaks; unchecked (the caller hashes them)."""
        ...

    def close(self) -> None: ...
