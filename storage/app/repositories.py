"""Repositories: creating, finding, listing and removing them, and reading their revisions and trees."""

from __future__ import annotations

from storage.app.ports import Sessions
from storage.app.views import CommitInfo, RepoInfo, TreeEntry, commit_info, file_info, repo_info
from storage.catalog import repos
from storage.core.errors import RepoExists


class Repositories:
    def __init__(self, sessions: Sessions) -> None:
        self._session = sessions

    def create_repo(self, repo_id: str, *, private: bool = False, exist_ok: bool = False) -> RepoInfo:
        try:
            with self._session() as s:
                return repo_info(repos.create_repo(s, repo_id, private=private))
        except RepoExists:
            if not exist_ok:
                raise
            return self.get_repo(repo_id)

    def get_repo(self, repo_id: str) -> RepoInfo:
        with self._session() as s:
            return repo_info(repos.find_repo(s, repo_id))

    def list_repos(self) -> list[RepoInfo]:
        with self._session() as s:
            return [repo_info(r) for r in repos.list_repos(s)]

    def set_private(self, repo_id: str, private: bool) -> RepoInfo:
        with self._session() as s:
            repo = repos.find_repo(s, repo_id)
            repo.private = private
            return repo_info(repo)

    def delete_repo(self, repo_id: str) -> None:
        with self._session() as s:
            repos.delete_repo(s, repos.find_repo(s, repo_id))

    def resolve(self, repo_id: str, revision: str) -> CommitInfo:
        """A branch name or a full 40-hex commit id → the commit (RevisionNotFound otherwise)."""
        with self._session() as s:
            return commit_info(repos.resolve(s, repos.find_repo(s, repo_id), repo_id, revision))

    def list_branches(self, repo_id: str) -> dict[str, str]:
        with self._session() as s:
            return repos.branches(s, repos.find_repo(s, repo_id))

    def list_commits(self, repo_id: str, revision: str) -> list[CommitInfo]:
        with self._session() as s:
            head = repos.resolve(s, repos.find_repo(s, repo_id), repo_id, revision)
            return [commit_info(c) for c in repos.history(s, head)]

    def list_tree(self, repo_id: str, commit_oid: str) -> list[TreeEntry]:
        """Every file of the repository's commit, sorted by path (empty for another repository's commit)."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id)
            return [TreeEntry(path, file_info(f)) for path, f in repos.tree(s, repo, commit_oid)]

    def get_entry(self, repo_id: str, commit_oid: str, path: str) -> TreeEntry:
        """One file of the commit (EntryNotFound otherwise)."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id)
            return TreeEntry(path, file_info(repos.entry(s, repo, repo_id, commit_oid, path)))
