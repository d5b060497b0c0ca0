"""Who holds a file by right, not by hash: the repositories that name it and those it was uploaded for.

The hub keeps one copy of each file, whoever pushed it, so a file's SHA-256 alone must not let anyone
commit it or learn about it. The service's policy (service/policy.py, may_name_file) decides from the
two lists this gives: a caller may name a file who may read a repository naming it, or may write one
its bytes were uploaded for (an LFS PUT or a Xet shard, each checked against the hash, records that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.app.ports import Sessions
from storage.app.views import RepoInfo, repo_info
from storage.catalog import grants, repos
from storage.core.errors import RepoNotFound
from storage.core.names import check_sha256


@dataclass(frozen=True, slots=True)
class FileHolders:
    # Repositories with a commit whose tree holds the file.
    naming: tuple[RepoInfo, ...]
    # Repositories the file's bytes were uploaded for.
    granted: tuple[RepoInfo, ...]


class Grants:
    def __init__(self, sessions: Sessions) -> None:
        self._session = sessions

    def holders(self, sha256s: Iterable[str]) -> dict[str, FileHolders]:
        """Each file's holders (every file asked about is in the answer), in one session."""
        wanted = list(dict.fromkeys(check_sha256(sha) for sha in sha256s))
        if not wanted:
            return {}
        with self._session() as s:
            naming = grants.repos_naming(s, wanted)
            granted = grants.repos_granted(s, wanted)
            return {
                sha: FileHolders(
                    naming=tuple(repo_info(r) for r in naming.get(sha, ())),
                    granted=tuple(repo_info(r) for r in granted.get(sha, ())),
                )
                for sha in wanted
            }

    def grant(self, repo_id: str, sha256s: Iterable[str], *, repo_type: str = "model") -> None:
        """Record that these files' bytes were uploaded for the repository (and checked on the way);
        nothing when the repository was deleted meanwhile."""
        checked = [check_sha256(sha) for sha in sha256s]
        with self._session() as s:
            try:
                repo = repos.find_repo(s, repo_id, repo_type)
            except RepoNotFound:
                return
            grants.add_grants(s, repo, checked)
