"""The pull-through mirror: a repository or revision this hub does not hold is fetched from an upstream
hub, stored as a push is (staging, then ingest: mirrored families dedup and delta like pushed ones), and
served; later requests are served from what is held.

- Ids: a mirrored commit keeps the upstream's commit id, so `X-Repo-Commit` and `sha` say what the
  upstream says. Its parent is the commit the branch held here before (history lists the revisions
  this mirror saw, not the upstream's whole log).
- Freshness: a commit id or a tag is fetched once and never looked up again; a branch is re-resolved
  when its last look is older than the branch TTL. When the upstream cannot be reached, what is held is
  served and the status says "stale".
- Privacy: the upstream's private flag is kept; a private upstream repository is fetched only for a
  caller who could read it here, so nobody learns of it through the mirror who could not anyway.
- Once per content: each file's fetch is claimed in the catalog under its content hash (a unique key,
  so API replicas on many machines take turns); the others wait for it and reuse the bytes.
- Read-only: a mirrored repository takes no commits, pushes, refs, settings or moves here (the upstream
  would move its branches over them); it may be deleted, and the next request fetches it again.
- Checked: bytes are hashed against the upstream's LFS oid (or git blob id) as they stream into
  staging; a mismatch leaves nothing and is UpstreamMismatch (502).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from enum import Enum, StrEnum

from storage.app.ports import Sessions, Upstream
from storage.app.uploads import Uploads
from storage.catalog import jobs, repos
from storage.catalog import mirror as mirrored
from storage.catalog.db import unique_conflicts
from storage.catalog.models import RefKind, RepoType, utcnow
from storage.core.errors import Conflict, NotFound, RepoNotFound, UploadMismatch, UpstreamMismatch, UpstreamUnavailable
from storage.core.faults import crash_point
from storage.core.gitobjects import GitBlob
from storage.core.names import is_commit_oid
from storage.core.upstream import ContentCheck, UpstreamFile, UpstreamRevision, is_mirrored
from storage.settings import Settings

# How often a waiting request looks whether another process finished the fetch it waits for.
CLAIM_POLL_SECONDS = 0.1
# Writing a mirrored revision races other replicas writing the same one; the loser re-reads and finds it.
WRITE_ATTEMPTS = 3


class MirrorStatus(StrEnum):
    """What the mirror did for a request (the X-Deltahub-Mirror header)."""

    HIT = "hit"  # served from what is held, fresh
    FETCHED = "fetched"  # fetched from the upstream for this request
    REFRESHED = "refreshed"  # a branch re-resolved at the upstream (its files were held or fetched)
    STALE = "stale"  # the upstream was unreachable: what is held is served


class _Held(Enum):
    LOCAL = "local"  # a repository made here, not by the mirror: the mirror leaves it alone
    FRESH = "fresh"
    EXPIRED = "expired"  # a branch looked up longer ago than the TTL
    ABSENT = "absent"


class Mirror:
    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        uploads: Uploads,
        upstream: Upstream | None,
        enqueue: Callable[[int], None],
    ) -> None:
        self._settings = settings
        self._session = sessions
        self._uploads = uploads
        self._upstream = upstream
        self._enqueue = enqueue
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    @property
    def enabled(self) -> bool:
        return self._upstream is not None

    def close(self) -> None:
        if self._upstream is not None:
            self._upstream.close()

    def pull(
        self, repo_id: str, revision: str, *, repo_type: str = RepoType.MODEL, may_read_private: bool = False
    ) -> MirrorStatus | None:
        """Make `revision` of `repo_id` held, from the upstream if need be; None when the mirror has no
        say (no upstream, not an allowed repository, or one made here)."""
        s = self._settings
        if self._upstream is None or not is_mirrored(repo_id, s.mirror_allow_patterns, s.mirror_deny_patterns):
            return None
        held = self._held(repo_id, repo_type, revision)
        if held is _Held.LOCAL:
            return None
        if held is _Held.FRESH:
            return MirrorStatus.HIT
        try:
            found = self._upstream.revision(repo_type, repo_id, revision)
        except UpstreamUnavailable:
            if held is _Held.EXPIRED:
                return MirrorStatus.STALE
            raise
        except NotFound:
            if held is _Held.EXPIRED:
                return MirrorStatus.STALE  # gone upstream (or hidden): keep serving what was seen
            raise
        if found.private and not may_read_private:
            raise RepoNotFound(repo_id=repo_id)
        self._store(repo_id, repo_type, revision, found)
        return MirrorStatus.REFRESHED if held is _Held.EXPIRED else MirrorStatus.FETCHED

    def mirrored_from(self, repo_id: str, *, repo_type: str = RepoType.MODEL) -> str | None:
        """The upstream a repository here is a copy of (it is read-only then: the upstream would move its
        branches over anything written here), or None for a repository made here."""
        with self._session() as s:
            held = mirrored.is_mirrored_repo(s, repos.find_repo(s, repo_id, repo_type))
        return (self._settings.mirror_upstream or "an upstream hub") if held else None

    def _held(self, repo_id: str, repo_type: str, revision: str) -> _Held:
        with self._session() as s:
            try:
                repo = repos.find_repo(s, repo_id, repo_type)
            except RepoNotFound:
                return _Held.ABSENT
            if not mirrored.is_mirrored_repo(s, repo):
                return _Held.LOCAL
            ref = repos.find_ref(s, repo, revision)
            if ref is None:
                if is_commit_oid(revision):
                    try:
                        repos.resolve(s, repo, repo_id, revision)
                        return _Held.FRESH
                    except NotFound:
                        return _Held.ABSENT
                return _Held.ABSENT
            looked = mirrored.looked_up(s, repo, revision)
            if ref.kind == RefKind.TAG or looked is None:
                return _Held.FRESH  # tags never move; a branch made here is this hub's own
            ttl = timedelta(seconds=self._settings.mirror_branch_ttl_seconds)
            return _Held.FRESH if utcnow() - looked.fetched_at <= ttl else _Held.EXPIRED

    def _store(self, repo_id: str, repo_type: str, revision: str, found: UpstreamRevision) -> None:
        """Hold the upstream's commit (fetching the files not held) and point `revision` at it."""
        files: dict[str, str] | None = None
        for attempt in range(WRITE_ATTEMPTS):
            if files is None and not self._holds_commit(repo_id, repo_type, found.commit):
                files = {f.path: self._fetch(repo_type, repo_id, found.commit, f) for f in found.files}
            try:
                self._write(repo_id, repo_type, revision, found, files)
                return
            except Conflict:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _holds_commit(self, repo_id: str, repo_type: str, oid: str) -> bool:
        with self._session() as s:
            try:
                repos.resolve(s, repos.find_repo(s, repo_id, repo_type), repo_id, oid)
            except NotFound:
                return False
            return True

    def _write(
        self, repo_id: str, repo_type: str, revision: str, found: UpstreamRevision, files: dict[str, str] | None
    ) -> None:
        """The repository (first time), the commit and its ingest jobs, the ref and the lookup: one
        transaction, so a crash leaves either all of it or none (the staged files wait for GC)."""
        job_ids: list[int] = []
        with unique_conflicts("mirrored concurrently"), self._session() as s:
            try:
                repo = repos.find_repo(s, repo_id, repo_type)
            except RepoNotFound:
                repo = repos.create_repo(s, repo_id, private=found.private, repo_type=repo_type)
            if files is not None:
                parent = repos.branch_head(s, repo, revision) if found.kind == "branch" else None
                blobs = {f.path: GitBlob(f.sha256 is not None, f.git_oid) for f in found.files}
                added = mirrored.add_commit(
                    s, repo, found.commit, files, blobs=blobs, parent_oid=parent.oid if parent else None,
                    message=f"mirrored from {self._settings.mirror_upstream} ({revision})",
                )
                if added:
                    job_ids = jobs.queue_ingest(s, repo.id, sorted(files.items()))
            if found.kind != "commit":
                mirrored.point_ref(s, repo, revision, RefKind(found.kind), found.commit)
            mirrored.record_lookup(s, repo, revision, found.commit)
            crash_point("mirror.in_transaction")
        for job_id in job_ids:
            self._enqueue(job_id)

    # One fetch per content

    def _fetch(self, repo_type: str, repo_id: str, commit: str, file: UpstreamFile) -> str:
        """The sha256 of the file's bytes, held here once this returns."""
        if file.sha256 is not None and self._uploads.has_file(file.sha256):
            return file.sha256
        key = file.claim_key
        # Each fetch is its own claimant, so threads of one process take turns as replicas do.
        owner = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        while True:
            state, sha256 = self._claim(key, owner)
            if state == "done" and sha256 is not None:
                return sha256
            if state == "mine":
                crash_point("mirror.claimed")
                try:
                    sha256 = self._download(repo_type, repo_id, commit, file, key, owner)
                except BaseException:
                    with self._session() as s:
                        mirrored.release_claim(s, key, owner)
                    raise
                with self._session() as s:
                    mirrored.finish_claim(s, key, owner, sha256)
                crash_point("mirror.fetched")
                return sha256
            time.sleep(CLAIM_POLL_SECONDS)

    def _claim(self, key: str, owner: str) -> tuple[str, str | None]:
        try:
            with unique_conflicts("claimed"), self._session() as s:
                mirrored.insert_claim(s, key, owner)
            return "mine", None
        except Conflict:
            pass
        stale_before = utcnow() - timedelta(seconds=self._settings.mirror_claim_seconds)
        with self._session() as s:
            return mirrored.claim_state(s, key, owner, stale_before=stale_before)

    def _download(
        self, repo_type: str, repo_id: str, commit: str, file: UpstreamFile, key: str, owner: str
    ) -> str:
        assert self._upstream is not None
        check = ContentCheck(file)
        chunks = self._upstream.download(repo_type, repo_id, commit, file)
        try:
            info = self._uploads.upload(
                self._checked(chunks, check, key, owner), expected_sha256=file.sha256, expected_size=file.size
            )
        except UploadMismatch as exc:
            raise UpstreamMismatch(detail=exc.message) from None
        return info.sha256

    def _checked(self, chunks: Iterator[bytes], check: ContentCheck, key: str, owner: str) -> Iterator[bytes]:
        """Hash as the bytes pass into staging; a mismatch raises before staging is kept. Heartbeats the
        claim so that waiting replicas know this fetch is alive."""
        beat_every = self._settings.mirror_claim_seconds / 4
        last_beat = time.monotonic()
        for chunk in chunks:
            check.update(chunk)
            yield chunk
            crash_point("mirror.mid_transfer")
            if time.monotonic() - last_beat > beat_every:
                with self._session() as s:
                    mirrored.heartbeat(s, key, owner)
                last_beat = time.monotonic()
        problem = check.problem()
        if problem is not None:
            raise UpstreamMismatch(detail=problem)
