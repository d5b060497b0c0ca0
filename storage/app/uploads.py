"""Uploads: bytes streamed into staging, hashed as they pass, then recorded as a file the hub holds.

A file is addressed by the SHA-256 of its bytes (the hub's LFS oid) and is readable the moment its
upload completes: it is served from staging until ingest has stored it in reduced form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from storage.app.ports import Sessions
from storage.app.staging import StagedUpload, read_staged_layout, sniff_staged_format, stage, verify_staged
from storage.app.views import FileInfo, file_info
from storage.catalog import damage, files, jobs
from storage.catalog.db import unique_conflicts
from storage.catalog.models import FileObject, FileState, utcnow
from storage.core.errors import Conflict, FileNotStored, InvalidInput
from storage.core.faults import crash_point
from storage.core.formats.safetensors import FORMAT_ID as SAFETENSORS
from storage.core.names import check_sha256
from storage.objectstore import ObjectStore
from storage.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class _ClaimLost(Exception):
    """The claimed object's owner let it go first: the transaction is rolled back."""


class Uploads:
    def __init__(
        self, settings: Settings, sessions: Sessions, store: ObjectStore,
        enqueue: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._session = sessions
        self._store = store
        # Repairs are queued as the bytes arrive: a client may skip the commit of an unchanged file.
        self._enqueue = enqueue

    def has_file(self, sha256: str) -> bool:
        """True when the bytes are already held (staged or stored, and not found damaged by verify): the
        upload can be skipped.

        A yes is a promise to the uploader, who will commit without sending the bytes: it restarts the
        file's GC grace period (claimed_at), so an unreferenced file outlives the commit that needs it.
        """
        return sha256 in self.claim_held([sha256])

    def claim_held(self, sha256s: Iterable[str]) -> set[str]:
        """Those of the files whose bytes are held (`has_file`), each of them claimed as `has_file`
        claims one, in one session."""
        wanted = list(dict.fromkeys(check_sha256(sha) for sha in sha256s))
        if not wanted:
            return set()
        with self._session() as s:
            # A damaged file is not held: an upload of its bytes repairs it.
            held = files.existing(s, wanted) - damage.unheld(s, wanted)
            files.claim(s, held, utcnow())
            return held

    def file_sizes(self, sha256s: Iterable[str]) -> dict[str, int]:
        """The size of each of the files the hub has a record of (held or not), in one session."""
        with self._session() as s:
            return files.sizes(s, [check_sha256(sha) for sha in sha256s])

    def unheld(self, sha256s: Iterable[str]) -> set[str]:
        """Those of the files (named by a tree, say) whose bytes the hub cannot produce: found damaged by
        verify and not yet pushed again. Read-only, unlike `has_file`."""
        with self._session() as s:
            return damage.unheld(s, sha256s)

    def file_info(self, sha256: str) -> FileInfo:
        with self._session() as s:
            file = s.get(FileObject, check_sha256(sha256))
            if file is None:
                raise FileNotStored(sha256=sha256)
            history = jobs.jobs_for_file(s, sha256)
            return file_info(file, ingest=history[-1].state if history else None)

    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo:
        """Stream bytes to staging, hashing as they pass; UploadMismatch when size or hash differ.

        Bytes the hub holds already are not written again, but still hashed: an upload is proof that
        the uploader has the file (it grants them the right to commit it), so it must be the file."""
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
            if self.has_file(expected_sha256):
                verify_staged("", chunks, expected_sha256=expected_sha256, expected_size=expected_size)
                return self.file_info(expected_sha256)
        staged = stage(
            self._store,
            chunks,
            expected_sha256=expected_sha256,
            expected_size=expected_size,
            max_bytes=self._settings.max_upload_bytes,
        )
        created = False
        try:
            created = self._hold(staged)
        finally:
            if not created:  # an identical upload won the race: keep theirs
                self._store.delete(staged.key)
        crash_point("upload.after_file_row")
        return self.file_info(staged.sha256)

    def adopt(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None,
        expected_size: int,
        claim: Callable[[Session, str], bool],
    ) -> FileInfo | None:
        """Stage a file whose bytes another use case already wrote at `key` (`chunks` reads them), without
        writing them again: hashed and checked as `upload` does, then held under that very key.

        `claim(session, sha256)` runs in the transaction that creates the file row and takes the object
        over from its owner (False: the owner no longer has it). None, and the object untouched, when the
        file is held already, the claim fails or an identical upload wins the race: stage it with `upload`.
        """
        staged = verify_staged(key, chunks, expected_sha256=expected_sha256, expected_size=expected_size)
        try:
            if not self._hold(staged, claim=claim):
                return None
        except _ClaimLost:
            return None
        crash_point("upload.after_file_row")
        return self.file_info(staged.sha256)

    def _hold(self, staged: StagedUpload, claim: Callable[[Session, str], bool] | None = None) -> bool:
        """The file row of a staged upload; False when the file is held already (theirs is kept)."""
        # A sniff of the first bytes only: the request streams bytes and records block sums, and the
        # header (68 MB for 1M tensors) is parsed by ingest, off the request path.
        fmt = sniff_staged_format(self._store, staged.key, staged.size)
        crash_point("upload.before_file_row")
        replaced: list[str] = []
        repair_job: int | None = None
        try:
            with self._session() as s, unique_conflicts("file uploaded concurrently"):
                held = s.get(FileObject, staged.sha256, with_for_update=True)
                if held is not None:
                    if not damage.unheld(s, [staged.sha256]):
                        return False
                    replaced = self._repair(s, held, staged)
                    repair_job = jobs.queue_repair(s, staged.sha256)
                else:
                    s.add(
                        FileObject(
                            sha256=staged.sha256, size=staged.size, kind=fmt.format_id,
                            state=FileState.STAGED, staging_key=staged.key, staging_sums=staged.block_sums,
                        )
                    )
                    s.flush()
                if claim is not None and not claim(s, staged.sha256):
                    raise _ClaimLost  # rolls the file row back (or its repair) with whatever the claim wrote
        except Conflict:
            return False
        for key in replaced:  # a damaged staged copy, now that no row names it
            self._store.delete(key)
        if repair_job is not None and self._enqueue is not None:
            self._enqueue(repair_job)
        return True

    @staticmethod
    def _repair(s: Session, file: FileObject, staged: StagedUpload) -> list[str]:
        """A new upload of a damaged file's bytes (proven by their hash) becomes its staged copy: reads
        and dedup use it at once, and the ingest queued with it re-encodes the stored form
        (workers/jobs/repair.py). A damaged staged copy is simply replaced; returns its key, to delete."""
        old = file.staging_key
        file.staging_key, file.staging_sums, file.claimed_at = staged.key, staged.block_sums, utcnow()
        if file.state == FileState.STORED:
            return []
        file.state, file.error = FileState.STAGED, None
        damage.clear_file(s, file.sha256)
        return [old] if old is not None else []

    def check_safetensors(self, file: FileObject) -> None:
        """A commit names `file` at a .safetensors path: its bytes must parse (SafetensorsError, a 400).

        A stored safetensors file was parsed by ingest; a staged one was only sniffed at upload, so its
        header is checked here, bounded by `max_header_tensors` before it is decoded."""
        if file.kind == SAFETENSORS and file.state == FileState.STORED:
            return
        if file.staging_key is None:
            raise InvalidInput(detail=f"file {file.sha256} is not a safetensors file")
        read_staged_layout(self._store, file.staging_key, SAFETENSORS, file.size, self._settings.max_header_bytes,
                           self._settings.max_header_tensors)
        if file.kind != SAFETENSORS:
            raise InvalidInput(detail=f"file {file.sha256} is not a safetensors file")
