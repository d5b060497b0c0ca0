"""A repository's git objects, rebuilt from the catalog: what `git clone` and `git fetch` receive.

Each catalog commit becomes the git commit whose id it already has (storage/core/gitobjects.py): its
trees from the tree entries, its blobs from the files (an LFS file as the pointer of its sha256 and
size, any other file as its bytes). Every rebuilt id is checked against the one stored: a repository
whose objects do not rebuild (a mirrored commit, whose upstream commit object is not held) is refused,
never served with ids that differ from the API's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dulwich.objects import ObjectID, ShaFile
from dulwich.refs import Ref
from dulwich.repo import MemoryRepo

from storage.app.ports import Sessions
from storage.catalog import git as catalog_git
from storage.catalog import repos
from storage.catalog.git import GitCommitRow
from storage.catalog.models import RefKind
from storage.core.errors import GitNotServable, IntegrityError
from storage.core.gitobjects import blob_id, commit_bytes, lfs_pointer, tree_objects

BLOB, TREE, COMMIT = 3, 2, 1  # git object type numbers
DEFAULT_BRANCH = Ref(b"refs/heads/main")


class GitObjects:
    def __init__(self, sessions: Sessions, read: Callable[[str], Iterator[bytes]]) -> None:
        self._session = sessions
        self._read = read

    def repository(self, repo_id: str, repo_type: str) -> MemoryRepo:
        """An in-memory git repository with every commit, tree and blob of the repository, its
        branches (refs/heads/…), its tags (refs/tags/…, lightweight) and HEAD → main."""
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            commits = catalog_git.repo_commits(s, repo)
            refs = catalog_git.repo_refs(s, repo)
        out = MemoryRepo()
        blobs: dict[str, bytes] = {}
        for commit in commits:
            self._add_commit(out, commit, blobs, repo_id)
        for name, kind, oid in refs:
            prefix = b"refs/tags/" if kind == RefKind.TAG else b"refs/heads/"
            out.refs[Ref(prefix + name.encode())] = ObjectID(oid.encode())
        if DEFAULT_BRANCH in out.refs.allkeys():
            out.refs.set_symbolic_ref(Ref(b"HEAD"), DEFAULT_BRANCH)
        return out

    def _add_commit(self, out: MemoryRepo, commit: GitCommitRow, blobs: dict[str, bytes], repo_id: str) -> None:
        store = out.object_store
        for entry in commit.entries:
            if entry.git_oid in blobs:
                continue
            content = lfs_pointer(entry.sha256, entry.size) if entry.lfs else b"".join(self._read(entry.sha256))
            if blob_id(content) != entry.git_oid:
                raise IntegrityError(detail=f"{entry.path!r} of commit {commit.oid} does not rebuild its git blob "
                                            f"{entry.git_oid}")
            blobs[entry.git_oid] = content
            store.add_object(ShaFile.from_raw_string(BLOB, content))
        root, trees, _ = tree_objects({e.path: e.git_oid for e in commit.entries})
        for content in trees.values():
            store.add_object(ShaFile.from_raw_string(TREE, content))
        raw = commit_bytes(root, commit.parent_oid, commit.git_author, commit.git_committer, commit.message)
        rebuilt = ShaFile.from_raw_string(COMMIT, raw)
        if rebuilt.id.decode() != commit.oid:
            raise GitNotServable(detail=f"commit {commit.oid} of {repo_id!r} was mirrored from an upstream hub, "
                                        "which did not send its git commit object; read it with huggingface_hub")
        store.add_object(rebuilt)
