"""Browsing the hub: what the web pages and the metrics read. Read-only; every answer is a frozen record
from storage/catalog/browse.py, never an ORM row.

Visibility is not decided here: records carry each repository's `private` flag and the service filters
with the one access rule it shares with the API (service/auth.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from storage.app.ports import Sessions
from storage.catalog import browse, repos
from storage.catalog.browse import (
    EntryStorage,
    FamilyMember,
    FamilySummary,
    JobRow,
    Location,
    RepoSummary,
    TensorRow,
    Totals,
)
from storage.core.errors import EntryNotFound

__all__ = [
    "Browse", "EntryStorage", "FamilyMember", "FamilySummary", "JobRow", "Location", "RepoSummary",
    "TensorRow", "Totals",
]

# A model card is text people read on a page: past 1 MiB it is something else, shown as a file instead.
MODEL_CARD_MAX_BYTES = 1 << 20

ReadFile = Callable[[str, int, int | None], Iterator[bytes]]


class Browse:
    def __init__(self, sessions: Sessions, read: ReadFile) -> None:
        self._session = sessions
        self._read = read

    def repositories(self) -> list[RepoSummary]:
        with self._session() as s:
            return browse.repo_summaries(s)

    def tree(self, repo_id: str, commit_oid: str) -> list[EntryStorage]:
        """The files of the repository's commit and how each is stored (empty for another's commit)."""
        with self._session() as s:
            return browse.tree_storage(s, repos.find_repo(s, repo_id).id, commit_oid)

    def entry(self, repo_id: str, commit_oid: str, path: str) -> tuple[EntryStorage, list[TensorRow]]:
        """One file of the commit, with its tensor table (empty for files that are not weights)."""
        for entry in self.tree(repo_id, commit_oid):
            if entry.path == path:
                with self._session() as s:
                    return entry, browse.file_tensors(s, entry.file.sha256)
        raise EntryNotFound(repo_id=repo_id, revision=commit_oid, path=path)

    def locations(self, shas: Iterable[str]) -> dict[str, list[Location]]:
        with self._session() as s:
            return dict(browse.locations(s, shas))

    def families(self) -> list[FamilySummary]:
        with self._session() as s:
            return browse.families(s)

    def family(self, family_id: int) -> tuple[FamilySummary, list[FamilyMember]] | None:
        with self._session() as s:
            return browse.family(s, family_id)

    def jobs(self, states: Sequence[str], limit: int = 200) -> list[JobRow]:
        with self._session() as s:
            return browse.ingest_jobs(s, states, limit)

    def totals(self) -> Totals:
        with self._session() as s:
            return browse.totals(s)

    def recent_ingest(self, limit: int = 100) -> list[tuple[int, float]]:
        """(file bytes, seconds from queued to done) of the latest finished ingest jobs."""
        with self._session() as s:
            return browse.recent_ingest(s, limit)

    def text(self, sha256: str, size: int) -> str | None:
        """A small text file's content (a model card), or None when it is too big to show."""
        if size > MODEL_CARD_MAX_BYTES:
            return None
        return b"".join(self._read(sha256, 0, None)).decode("utf-8", "replace")
