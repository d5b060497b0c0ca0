"""The interfaces the use cases are written against; adapters (catalog sessions, object stores, the
in-process pool, Celery) implement them."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

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
