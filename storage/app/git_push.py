"""git push: the ref updates of a received pack become branches, tags and commits of the catalog.

A pushed commit is stored with the author and committer lines and message git hashed, so the catalog
rebuilds it byte for byte and its id stays the one the client made; a commit that would not rebuild
(extra headers such as a signature, a merge, a file mode other than 100644) is refused, not altered.
An LFS pointer blob names an object the client uploaded first through the LFS batch API (the same
staging, dedup and ingest as every upload); any other blob is staged here as a regular file. Branches
move by fast-forward only; tags are made once and never moved; main is never deleted.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Blob, Commit, ObjectID

from storage.app.ports import Sessions
from storage.app.quotas import Quotas
from storage.app.uploads import Uploads
from storage.catalog import git as catalog_git
from storage.catalog import jobs, repos
from storage.catalog.models import Commit as CommitRow
from storage.catalog.models import FileObject, RefKind
from storage.core.errors import (
    DeltahubError,
    FileNotStored,
    GitNonFastForward,
    GitPackInvalid,
    GitPushRefused,
    RevisionNotFound,
)
from storage.core.faults import crash_point
from storage.core.gitobjects import GitBlob, commit_bytes, parse_pointer
from storage.core.names import check_branch, check_path, check_tree, split_repo_id

ZERO = "0" * 40
BRANCHES, TAGS = "refs/heads/", "refs/tags/"


@dataclass(frozen=True, slots=True)
class PushTarget:
    repo_id: str
    repo_type: str
    author: str  # the pushing user: the catalog's author column (the git lines keep the client's)
    # Which of these held files the pusher may name by SHA-256 (service/policy.py nameable_files): an LFS
    # pointer proves nothing, so another tenant's private file is "not uploaded" to them.
    nameable: Callable[[Sequence[str]], set[str]]


@dataclass
class _NewCommit:
    oid: str
    files: dict[str, str] = field(default_factory=dict)  # path → sha256
    blobs: dict[str, GitBlob] = field(default_factory=dict)
    git_author: str = ""
    git_committer: str = ""
    message: str = ""
    regular: dict[str, bytes] = field(default_factory=dict)  # sha256 → bytes of the files not in LFS
    sizes: dict[str, int] = field(default_factory=dict)  # sha256 → size of every file
    pointers: dict[str, tuple[str, int]] = field(default_factory=dict)  # path → (sha256, size) of LFS files


class GitPush:
    def __init__(self, sessions: Sessions, uploads: Uploads, quotas: Quotas, enqueue: Callable[[int], None]) -> None:
        self._session = sessions
        self._uploads = uploads
        self._quotas = quotas
        self._enqueue = enqueue

    def update_ref(self, target: PushTarget, ref: str, old: str, new: str, store: BaseObjectStore) -> str | None:
        """Apply one ref update from a push: None when done, else the one-line reason git shows."""
        try:
            if ref.startswith(BRANCHES):
                self._branch(target, check_branch(ref[len(BRANCHES):]), old, new, store)
            elif ref.startswith(TAGS):
                self._tag(target, check_branch(ref[len(TAGS):]), old, new, store)
            else:
                raise GitPushRefused(ref=ref, detail="deltahub keeps branches (refs/heads/) and tags (refs/tags/)")
        except DeltahubError as err:
            return err.message.replace("\n", " ")
        return None

    # Branches ------------------------------------------------------------------------------------
    def _branch(self, target: PushTarget, branch: str, old: str, new: str, store: BaseObjectStore) -> None:
        ref = BRANCHES + branch
        with self._session() as s:
            repo = repos.find_repo(s, target.repo_id, target.repo_type)
            existing = repos.find_ref(s, repo, branch)
            if existing is not None and existing.kind == RefKind.TAG:
                raise GitPushRefused(ref=ref, detail=f"{branch!r} is a tag here")
            head = existing.commit_oid if existing is not None else None
            if old != (head or ZERO):
                raise GitPushRefused(ref=ref, detail=f"the branch is at {head or 'nothing'}, not {old}: fetch first")
            if new == ZERO:
                if branch == repos.DEFAULT_BRANCH:
                    raise GitPushRefused(ref=ref, detail="main is the repository's default branch and stays")
                repos.delete_ref(s, repo, target.repo_id, branch, RefKind.BRANCH)
                return
            base, chain = _new_commits(lambda oid: catalog_git.repo_holds_commit(s, repo, oid), store, new, ref)
        if head is not None and base != head:
            raise GitNonFastForward(ref=ref, new=new, head=head)
        commits = [self._prepare(c, store, ref) for c in chain]
        self._check_pointers(target, commits, ref)
        self._check_quota(target, commits)  # before any byte is staged
        for commit in commits:
            for sha256, content in commit.regular.items():
                self._uploads.upload([content], expected_sha256=sha256, expected_size=len(content))
        crash_point("git.push_staged")
        added: list[tuple[str, str]] = []
        with self._session() as s:
            repo = repos.find_repo(s, target.repo_id, target.repo_type)
            parent = s.get(CommitRow, (repo.id, base)) if base is not None else None
            if head is None and parent is not None:
                repos.create_ref(s, repo, branch, RefKind.BRANCH, parent)
            previous = repos.tree_files(s, parent) if parent is not None else {}
            for commit in commits:
                changed = [(path, sha) for path, sha in commit.files.items() if previous.get(path) != sha]
                for path, sha in changed:  # what each commit adds, checked as an API commit's additions are
                    file = s.get(FileObject, sha)
                    if file is None:
                        raise FileNotStored(sha256=sha)
                    if path.endswith(".safetensors"):
                        self._uploads.check_safetensors(file)
                added += changed
                previous = commit.files
                parent = repos.new_commit(
                    s, repo, branch, files=commit.files, message=commit.message, author=target.author,
                    parent=parent, expected_parent=parent.oid if parent else None, blobs=commit.blobs,
                    git_author=commit.git_author, git_committer=commit.git_committer, expected_oid=commit.oid,
                )
            job_ids = jobs.queue_ingest(s, repo.id, added)
            crash_point("git.push_in_transaction")
        for job_id in job_ids:
            self._enqueue(job_id)

    def _prepare(
        self, commit: Commit, store: BaseObjectStore, ref: str
    ) -> _NewCommit:
        """The catalog form of a pushed commit; refused if it would not rebuild byte for byte."""
        out = _NewCommit(commit.id.decode())
        raw = commit.as_raw_string()
        header, _, body = raw.partition(b"\n\n")
        lines = dict(line.split(b" ", 1) for line in header.split(b"\n") if b" " in line)
        try:
            out.git_author, out.git_committer = lines[b"author"].decode(), lines[b"committer"].decode()
            out.message = body.decode()
        except (KeyError, UnicodeDecodeError) as err:
            raise GitPushRefused(
                ref=ref, detail=f"commit {out.oid} is not UTF-8 with one author and committer"
            ) from err
        parent = commit.parents[0].decode() if commit.parents else None
        if commit_bytes(commit.tree.decode(), parent, out.git_author, out.git_committer, out.message) != raw:
            raise GitPushRefused(ref=ref, detail=f"commit {out.oid} has headers deltahub does not keep "
                                                 "(a signature, an encoding): it would not keep its id")
        for entry in store.iter_tree_contents(commit.tree):
            path, mode, oid = entry.path.decode(errors="replace"), entry.mode, entry.sha.decode()
            if mode != (stat.S_IFREG | 0o644):
                kind = "an executable" if stat.S_ISREG(mode) else "a symlink" if stat.S_ISLNK(mode) else "a submodule"
                raise GitPushRefused(ref=ref, detail=f"{path!r} is {kind}: deltahub keeps plain files (mode 100644)")
            check_path(path)
            blob = store[entry.sha]
            if not isinstance(blob, Blob):
                raise GitPackInvalid(detail=f"{path!r} names {oid}, which is not a blob")
            content = blob.as_raw_string()
            pointer = parse_pointer(content)
            if pointer is not None:
                sha256, size = pointer
                out.pointers[path] = pointer  # checked with every other commit's (`_check_pointers`)
                out.files[path], out.blobs[path], out.sizes[sha256] = sha256, GitBlob(True, oid), size
            else:
                sha256 = hashlib.sha256(content).hexdigest()
                out.files[path], out.blobs[path], out.sizes[sha256] = sha256, GitBlob(False, oid), len(content)
                out.regular[sha256] = content
        check_tree(out.files)
        return out

    def _check_pointers(self, target: PushTarget, commits: list[_NewCommit], ref: str) -> None:
        """Every LFS pointer of the pushed commits names a held file the pusher may name, of the size it
        says (each held file is claimed, as an LFS batch's "held" answer claims it): refused at the first
        one that does not, in commit and tree order. Three catalog sessions, whatever the push holds."""
        named = list(dict.fromkeys(sha for c in commits for sha, _ in c.pointers.values()))
        held = self._uploads.claim_held(target.nameable(named)) if named else set()
        sizes = self._uploads.file_sizes(held) if held else {}
        for commit in commits:
            for path, (sha256, size) in commit.pointers.items():
                if sha256 not in held or sizes.get(sha256) != size:
                    raise GitPushRefused(ref=ref, detail=f"the LFS object of {path!r} ({sha256}) was not uploaded: "
                                                         "install git-lfs and push again")

    def _check_quota(self, target: PushTarget, commits: list[_NewCommit]) -> None:
        sizes = {sha: size for c in commits for sha, size in c.sizes.items()}
        namespace, name = split_repo_id(target.repo_id)
        self._quotas.check(namespace, sizes, repo=name)

    # Tags ----------------------------------------------------------------------------------------
    def _tag(self, target: PushTarget, tag: str, old: str, new: str, store: BaseObjectStore) -> None:
        ref = TAGS + tag
        with self._session() as s:
            repo = repos.find_repo(s, target.repo_id, target.repo_type)
            existing = repos.find_ref(s, repo, tag)
            if existing is not None and existing.kind != RefKind.TAG:
                raise GitPushRefused(ref=ref, detail=f"{tag!r} is a branch here")
            if new == ZERO:
                if existing is None:
                    raise RevisionNotFound(repo_id=target.repo_id, revision=tag)
                repos.delete_ref(s, repo, target.repo_id, tag, RefKind.TAG)
                return
            if existing is not None:
                raise GitPushRefused(ref=ref, detail="tags never move here: delete the tag, then push it again")
            if ObjectID(new.encode()) in store and not isinstance(store[ObjectID(new.encode())], Commit):
                raise GitPushRefused(ref=ref, detail="annotated tags are not kept: push a lightweight tag")
            if not catalog_git.repo_holds_commit(s, repo, new):
                raise GitPushRefused(ref=ref, detail=f"{new} is on no branch of the repository: push it on one first")
            repos.create_ref(s, repo, tag, RefKind.TAG, repos.resolve(s, repo, target.repo_id, new))


def _new_commits(
    held: Callable[[str], bool], store: BaseObjectStore, new: str, ref: str
) -> tuple[str | None, list[Commit]]:
    """The commits from `new` back to the first one the repository holds (its id, None if none), oldest
    first. Merge commits are refused: a catalog commit has one parent."""
    chain: list[Commit] = []
    oid = new
    while not held(oid):
        if ObjectID(oid.encode()) not in store:
            raise GitPackInvalid(detail=f"commit {oid} was neither sent nor is held")
        commit = store[ObjectID(oid.encode())]
        if not isinstance(commit, Commit):
            raise GitPushRefused(ref=ref, detail=f"{oid} is not a commit")
        if len(commit.parents) > 1:
            raise GitPushRefused(ref=ref, detail=f"{oid} is a merge commit: deltahub keeps linear history (rebase)")
        chain.append(commit)
        if not commit.parents:
            return None, chain[::-1]
        oid = commit.parents[0].decode()
    return oid, chain[::-1]

