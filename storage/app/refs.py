"""Branches and tags: creating and deleting them, and listing both.

A branch starts at any revision (the head of "main" by default) and moves with each commit; a tag
names one commit for good, so a revision pinned to a tag always reads the same files.
"""

from __future__ import annotations

from storage.app.ports import Sessions
from storage.app.views import RefInfo, ref_info
from storage.catalog import repos
from storage.catalog.models import RefKind, RepoType
from storage.core.names import check_branch


class Refs:
    def __init__(self, sessions: Sessions) -> None:
        self._session = sessions

    def list_refs(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> list[RefInfo]:
        with self._session() as s:
            return [ref_info(r) for r in repos.refs(s, repos.find_repo(s, repo_id, repo_type))]

    def create_branch(
        self, repo_id: str, branch: str, *, revision: str | None = None, repo_type: str = RepoType.MODEL
    ) -> RefInfo:
        """A new branch at `revision` (the head of main by default); Conflict if the name is taken."""
        return self._create(repo_id, check_branch(branch), RefKind.BRANCH, revision, None, repo_type)

    def create_tag(
        self,
        repo_id: str,
        tag: str,
        *,
        revision: str | None = None,
        message: str | None = None,
        repo_type: str = RepoType.MODEL,
    ) -> RefInfo:
        return self._create(repo_id, check_branch(tag), RefKind.TAG, revision, message, repo_type)

    def delete_branch(self, repo_id: str, branch: str, *, repo_type: str = RepoType.MODEL) -> None:
        """Remove a branch; its commits stay reachable by id (and by any tag on them)."""
        self._delete(repo_id, branch, RefKind.BRANCH, repo_type)

    def delete_tag(self, repo_id: str, tag: str, *, repo_type: str = RepoType.MODEL) -> None:
        self._delete(repo_id, tag, RefKind.TAG, repo_type)

    def _create(
        self, repo_id: str, name: str, kind: RefKind, revision: str | None, message: str | None, repo_type: str
    ) -> RefInfo:
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            start = repos.resolve(s, repo, repo_id, revision or repos.DEFAULT_BRANCH)
            return ref_info(repos.create_ref(s, repo, name, kind, start, message=message))

    def _delete(self, repo_id: str, name: str, kind: RefKind, repo_type: str) -> None:
        with self._session() as s:
            repos.delete_ref(s, repos.find_repo(s, repo_id, repo_type), repo_id, name, kind)
