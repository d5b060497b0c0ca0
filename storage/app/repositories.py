"""Repositories: creating, finding, listing, renaming and removing them, and reading their revisions
and trees.

A repository is born as on the Hub: with one commit on "main" holding the Hub's default .gitattributes,
so clients that read the default branch of a new repository (transformers' push_to_hub reads its model
card) find a branch and no card, rather than no branch at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.app.gitattributes import default_gitattributes
from storage.app.ports import Sessions
from storage.app.uploads import Uploads
from storage.app.views import (
    CommitInfo,
    LocatedFile,
    ReadSource,
    RepoInfo,
    RepoListing,
    TreeEntry,
    commit_info,
    read_source,
    repo_info,
    tree_entry,
)
from storage.catalog import git as catalog_git
from storage.catalog import jobs, repos
from storage.catalog.models import RepoType
from storage.core.errors import EntryNotFound, InvalidInput, RepoExists, RepoNotFound
from storage.core.gitobjects import GitBlob, blob_id
from storage.core.names import is_sha256

INITIAL_COMMIT_MESSAGE = "initial commit"
MAX_LISTING_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RepoQuery:
    """A listing as the Hub's /api/models and /api/datasets take it."""

    repo_type: str = RepoType.MODEL
    search: str | None = None
    author: str | None = None
    sort: str | None = None
    descending: bool = True
    # Private repositories listed: all of them, or those of these namespaces and these repo ids.
    include_private: bool = False
    private_namespaces: frozenset[str] = frozenset()
    private_repos: frozenset[str] = frozenset()
    with_sizes: bool = False


class Repositories:
    def __init__(self, sessions: Sessions, uploads: Uploads, enqueue: Callable[[int], None]) -> None:
        self._session = sessions
        self._uploads = uploads
        self._enqueue = enqueue

    def create_repo(
        self,
        repo_id: str,
        *,
        private: bool = False,
        exist_ok: bool = False,
        repo_type: str = RepoType.MODEL,
        author: str | None = None,
    ) -> RepoInfo:
        """The repository and its initial commit on "main", in one transaction (RepoExists if taken)."""
        kind = _repo_type(repo_type)
        # Content-addressed and idempotent: uploaded before the transaction, held by every repository.
        attributes = self._uploads.upload([default_gitattributes(kind)])
        try:
            with self._session() as s:
                repo = repos.create_repo(s, repo_id, private=private, repo_type=kind)
                repos.new_commit(
                    s, repo, repos.DEFAULT_BRANCH, files={".gitattributes": attributes.sha256},
                    message=INITIAL_COMMIT_MESSAGE, author=author, parent=None, expected_parent=None,
                    blobs={".gitattributes": GitBlob(False, blob_id(default_gitattributes(kind)))},
                )
                job_ids = jobs.queue_ingest(s, repo.id, [(".gitattributes", attributes.sha256)])
                info = repo_info(repo)
        except RepoExists:
            if not exist_ok:
                raise
            return self.get_repo(repo_id, repo_type=kind)
        for job_id in job_ids:
            self._enqueue(job_id)
        return info

    def get_repo(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> RepoInfo:
        with self._session() as s:
            return repo_info(repos.find_repo(s, repo_id, repo_type))

    def list_repos(self) -> list[RepoInfo]:
        with self._session() as s:
            return [repo_info(r) for r in repos.list_repos(s)]

    def search_repos(self, query: RepoQuery, *, offset: int = 0, limit: int = 100) -> list[RepoListing]:
        """One page of a listing, heads included, in a fixed number of queries."""
        if offset < 0 or not 0 < limit <= MAX_LISTING_PAGE:
            raise InvalidInput(detail=f"a listing page holds 1..{MAX_LISTING_PAGE} repositories")
        with self._session() as s:
            rows = repos.search_repos(
                s, _repo_type(query.repo_type), search=query.search, author=query.author,
                include_private=query.include_private, private_namespaces=query.private_namespaces,
                private_repos=query.private_repos, sort=query.sort, descending=query.descending,
                offset=offset, limit=limit,
            )
            heads = [(c.repo_id, c.oid) for _, c in rows if c is not None]
            sizes = repos.head_sizes(s, heads) if query.with_sizes else {}
            return [
                RepoListing(
                    repo_info(r), commit_info(c) if c else None,
                    (sizes.get((c.repo_id, c.oid), 0) if c else 0) if query.with_sizes else None,
                )
                for r, c in rows
            ]

    def set_private(self, repo_id: str, private: bool, *, repo_type: str = RepoType.MODEL) -> RepoInfo:
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            repo.private = private
            return repo_info(repo)

    def move_repo(self, from_id: str, to_id: str, *, repo_type: str = RepoType.MODEL) -> RepoInfo:
        """Rename a repository, history and all (RepoExists when the new name is taken); the old name
        redirects to the new one until a repository is created under it."""
        with self._session() as s:
            return repo_info(repos.rename_repo(s, repos.find_repo(s, from_id, repo_type), to_id))

    def moved_to(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> RepoInfo | None:
        """The repository moved away from `repo_id` (its old name), under its current name; None when
        no repository was, or when one was created under that name since."""
        with self._session() as s:
            repo = repos.moved_to(s, repo_id, _repo_type(repo_type))
            return repo_info(repo) if repo is not None else None

    def delete_repo(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> None:
        with self._session() as s:
            repos.delete_repo(s, repos.find_repo(s, repo_id, repo_type))

    def resolve(self, repo_id: str, revision: str, *, repo_type: str = RepoType.MODEL) -> CommitInfo:
        """A branch, a tag or a full 40-hex commit id → the commit (RevisionNotFound otherwise)."""
        with self._session() as s:
            return commit_info(repos.resolve(s, repos.find_repo(s, repo_id, repo_type), repo_id, revision))

    def list_branches(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> dict[str, str]:
        with self._session() as s:
            return repos.branches(s, repos.find_repo(s, repo_id, repo_type))

    def list_commits(self, repo_id: str, revision: str, *, repo_type: str = RepoType.MODEL) -> list[CommitInfo]:
        with self._session() as s:
            head = repos.resolve(s, repos.find_repo(s, repo_id, repo_type), repo_id, revision)
            return [commit_info(c) for c in repos.history(s, head)]

    def list_tree(self, repo_id: str, commit_oid: str, *, repo_type: str = RepoType.MODEL) -> list[TreeEntry]:
        """Every file of the repository's commit, sorted by path (empty for another repository's commit)."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            return [tree_entry(e, f) for e, f in repos.tree(s, repo, commit_oid)]

    def last_changes(
        self, repo_id: str, commit_oid: str, paths: Sequence[str], *, repo_type: str = RepoType.MODEL
    ) -> dict[str, CommitInfo]:
        """For each path of the commit's tree, the newest commit that changed it (list_repo_tree(expand))."""
        with self._session() as s:
            head = repos.resolve(s, repos.find_repo(s, repo_id, repo_type), repo_id, commit_oid)
            return {path: commit_info(c) for path, c in repos.last_changes(s, head, paths).items()}

    def locate(
        self, repo_id: str, revision: str, path: str, *, repo_type: str = RepoType.MODEL,
        may_read: Callable[[RepoInfo], bool],
    ) -> LocatedFile:
        """A download's repository, commit and file, in one session and one repository lookup. `may_read`
        is the caller's access decision, taken on the repository as found: refused, the answer is
        RepoNotFound, exactly as for a repository that does not exist, before the revision is looked at.
        RevisionNotFound for a revision the repository lacks; a path its commit lacks is answered with
        the commit and no entry (the client caches "absent at this commit")."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            info = repo_info(repo)
            if not may_read(info):
                raise RepoNotFound(repo_id=repo_id)
            commit = repos.resolve(s, repo, repo_id, revision)
            try:
                row, file = repos.entry(s, repo, repo_id, commit.oid, path)
            except EntryNotFound:
                return LocatedFile(info, commit_info(commit), None, None)
            return LocatedFile(info, commit_info(commit), tree_entry(row, file), read_source(file))

    def locate_object(
        self, repo_id: str, sha256: str, *, repo_type: str = RepoType.MODEL, may_read: Callable[[RepoInfo], bool]
    ) -> ReadSource | None:
        """A git-lfs download's file, found with its repository in one session, under `locate`'s access
        decision (RepoNotFound when refused); None for content no commit of the repository names."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            info = repo_info(repo)
            if not may_read(info):
                raise RepoNotFound(repo_id=repo_id)
            file = catalog_git.repo_file(s, repo, sha256) if is_sha256(sha256) else None
            return read_source(file) if file is not None else None

    def object_sizes(
        self, repo_id: str, sha256s: Sequence[str], *, repo_type: str = RepoType.MODEL,
        may_read: Callable[[RepoInfo], bool],
    ) -> tuple[RepoInfo, dict[str, int]]:
        """A git-lfs download batch: the repository and the size of each offered content some commit of
        it names, in one session, under `locate`'s access decision (RepoNotFound when refused)."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            info = repo_info(repo)
            if not may_read(info):
                raise RepoNotFound(repo_id=repo_id)
            return info, catalog_git.repo_file_sizes(s, repo, [sha for sha in sha256s if is_sha256(sha)])

    def get_entry(self, repo_id: str, commit_oid: str, path: str, *, repo_type: str = RepoType.MODEL) -> TreeEntry:
        """One file of the commit (EntryNotFound otherwise)."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            return tree_entry(*repos.entry(s, repo, repo_id, commit_oid, path))


def _repo_type(repo_type: str) -> RepoType:
    try:
        return RepoType(repo_type)
    except ValueError:
        raise InvalidInput(detail=f"repository type {repo_type!r}: deltahub stores models and datasets") from None
