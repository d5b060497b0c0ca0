"""Quotas per namespace, on logical bytes: what its repositories name, counted as users see it (each
distinct file once per repository, whatever dedup saved: dedup is the operator's saving, not a
user's discount).

Checked before bytes travel: preupload (the sizes the client declares), the LFS batch (the objects it
offers), the Xet write token (refused once the namespace is full) and the Xet shard (its files' sizes),
and once more at commit, where the logical bytes really change.
"""

from __future__ import annotations

from collections.abc import Mapping

from storage.app.ports import Sessions
from storage.catalog import accounts
from storage.core.errors import QuotaExceeded


class Quotas:
    def __init__(self, sessions: Sessions) -> None:
        self._session = sessions

    def usage(self, namespace: str) -> tuple[int, int | None]:
        """(logical bytes the namespace holds, its quota or None)."""
        with self._session() as s:
            return accounts.namespace_logical_bytes(s, namespace), accounts.quota_of(s, namespace)

    def check(self, namespace: str, files: Mapping[str, int] | int, *, repo: str | None = None) -> None:
        """QuotaExceeded if adding `files` (SHA-256 → size, or a byte count) would pass the quota. Files
        the repository `repo` (a name in the namespace) already names add nothing."""
        with self._session() as s:
            limit = accounts.quota_of(s, namespace)
            if limit is None:
                return
            usage = accounts.namespace_logical_bytes(s, namespace)
            if isinstance(files, int):
                added = files
            else:
                held = accounts.named_by_repo(s, namespace, repo, list(files)) if repo else set()
                added = sum(size for sha, size in files.items() if sha not in held)
        if usage + added > limit:
            raise QuotaExceeded(namespace=namespace, would=usage + added, limit=limit, usage=usage)
