"""Commits: a new revision of a branch from files the hub already holds, and the ingest it queues."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from storage.app.ports import Sessions
from storage.app.uploads import Uploads
from storage.app.views import CommitInfo, FileAddition, commit_info
from storage.catalog import jobs, repos
from storage.catalog.models import FileObject, RefKind, RepoType
from storage.core.declared import base_from_config, base_from_model_card
from storage.core.errors import EntryNotFound, FileDamaged, FileNotStored, InvalidInput, RevisionNotFound
from storage.core.faults import crash_point
from storage.core.formats.registry import parses_tensors
from storage.core.gitobjects import GitBlob, blob_id
from storage.core.names import check_branch, check_path, check_sha256, check_tree, is_commit_oid

# A model card or config larger than this is not read for a declared base (they are a few KB).
MAX_CLAIM_FILE_BYTES = 1 << 20
# Files up to this size that arrive without a transfer mode are git blobs of their bytes, larger ones
# LFS pointers: the preupload answer's default split (service/options.py regular_file_max_bytes).
INLINE_MAX_BYTES = 1 << 20


class Commits:
    def __init__(
        self,
        sessions: Sessions,
        uploads: Uploads,
        read: Callable[[str], Iterator[bytes]],
        enqueue: Callable[[int], None],
    ) -> None:
        self._session = sessions
        self._uploads = uploads
        self._read = read
        self._enqueue = enqueue

    def commit(
        self,
        repo_id: str,
        branch: str,
        *,
        message: str,
        additions: Sequence[FileAddition] = (),
        deletions: Sequence[str] = (),
        parent_oid: str | None = None,
        author: str | None = None,
        declared_base: str | None = None,
        repo_type: str = RepoType.MODEL,
    ) -> CommitInfo:
        """A new commit on an existing `branch`. Every added sha256 must be held already (a file verify
        found damaged is not, until its bytes are uploaded again: FileDamaged).

        As on the Hub, a branch is made by create_branch, never by a commit: a commit to a branch that
        does not exist is RevisionNotFound, and one to a tag is refused. The one exception is "main" of
        a repository with no ref at all (created before repositories got their initial commit). A
        deletion that matches nothing is EntryNotFound.

        Queues ingest for the files that are still staged; `declared_base` ("namespace/name") is the
        uploader's claim of the base model, a hint that ingest checks.
        """
        check_branch(branch)
        for path in [a.path for a in additions] + list(deletions):
            check_path(path.rstrip("/") if path.endswith("/") else path)
        if parent_oid is not None and not is_commit_oid(parent_oid):
            raise InvalidInput(detail=f"parent commit {parent_oid!r} is not a 40-hex commit id")
        damaged = self._uploads.unheld([check_sha256(a.sha256) for a in additions])
        if damaged:  # the upload was asked for (the file is not held) and did not come
            raise FileDamaged(sha256=min(damaged))
        declared_base = declared_base or self._declared_base(additions)
        sizes = self._uploads.file_sizes(a.sha256 for a in additions)  # one session for all
        added_blobs = {a.path: self._git_blob(a, sizes) for a in additions}
        crash_point("commit.before_transaction")
        with self._session() as s:
            repo = repos.find_repo(s, repo_id, repo_type)
            head = repos.branch_head(s, repo, branch)
            if head is None:
                ref = repos.find_ref(s, repo, branch)
                if ref is not None and ref.kind == RefKind.TAG:
                    raise InvalidInput(detail=f"{branch!r} is a tag; commits are made on branches")
                if branch != repos.DEFAULT_BRANCH or repos.has_refs(s, repo):
                    raise RevisionNotFound(repo_id=repo_id, revision=branch)
            files = repos.tree_files(s, head) if head else {}
            blobs = repos.tree_blobs(s, head) if head else {}
            added: list[tuple[str, str]] = []
            for addition in additions:
                file = s.get(FileObject, check_sha256(addition.sha256))
                if file is None:
                    raise FileNotStored(sha256=addition.sha256)
                if addition.path.endswith(".safetensors"):
                    self._uploads.check_safetensors(file)
                if declared_base and parses_tensors(file.kind) and file.declared_base is None:
                    file.declared_base = declared_base
                added.append((addition.path, addition.sha256))
            missing = repos.apply_changes(files, added, deletions)
            if missing:
                raise EntryNotFound(repo_id=repo_id, revision=branch, path=missing[0])
            check_tree(files)
            blobs.update(added_blobs)
            commit = repos.new_commit(
                s, repo, branch, files=files, message=message, author=author,
                parent=head, expected_parent=parent_oid, blobs={p: blobs[p] for p in files if p in blobs},
            )
            job_ids = jobs.queue_ingest(s, repo.id, added)
            info = commit_info(commit)
            crash_point("commit.in_transaction")
        crash_point("commit.after_transaction")
        for job_id in job_ids:
            self._enqueue(job_id)
        return info

    def _git_blob(self, addition: FileAddition, sizes: Mapping[str, int]) -> GitBlob:
        """How git holds an added file (`sizes`: of the added files the hub has); an inline one is read
        once for its blob id (it is small)."""
        size = sizes.get(addition.sha256)
        if size is None:
            raise FileNotStored(sha256=addition.sha256)
        inline = (not addition.lfs) if addition.lfs is not None else size <= INLINE_MAX_BYTES
        if not inline:
            return GitBlob.pointer(addition.sha256, size)
        return GitBlob(False, blob_id(b"".join(self._read(addition.sha256))))

    def _declared_base(self, additions: Sequence[FileAddition]) -> str | None:
        """The base an upload claims, from the model card or config.json in the same commit."""
        by_name = {a.path.rsplit("/", 1)[-1]: a.sha256 for a in additions}
        for name, parse in (("README.md", base_from_model_card), ("config.json", base_from_config)):
            sha = by_name.get(name)
            if sha is None:
                continue
            if self._uploads.file_info(sha).size > MAX_CLAIM_FILE_BYTES:
                continue
            claim = parse(b"".join(self._read(sha)))
            if claim:
                return claim
        return None
