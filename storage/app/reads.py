"""Reads: any byte range of a held file, from staging while it waits for ingest, else rebuilt from its
stored frames. Every byte is checked before it is sent: staged bytes against the block checksums the
upload recorded, stored frames against their CRCs (storage/app/reader.py), hot copies against the file's SHA-256 when
they were written (storage/app/hotfiles.py)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from storage.app.hotfiles import HotCopy, HotFiles
from storage.app.ports import Sessions
from storage.app.reader import Reader
from storage.app.views import ReadSource, read_source
from storage.catalog.files import stored_among
from storage.catalog.models import FileObject, FileState
from storage.core.blocksums import CorruptStagedFile, block_span, checked_range
from storage.core.errors import DeltahubError, FileNotStored, IntegrityError, InvalidInput
from storage.core.names import check_sha256
from storage.objectstore import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)


class Reads:
    def __init__(self, sessions: Sessions, store: ObjectStore, reader: Reader, hot: HotFiles | None = None) -> None:
        self._session = sessions
        self._store = store
        self._reader = reader
        self.hot = hot or HotFiles(Path(), 0)
        if self.hot.enabled:
            try:
                self.hot.retain(self._stored_among)
            except DeltahubError:  # a catalog not migrated or not reachable yet: the next copy sweeps
                log.warning("could not sweep the hot-file cache at start", exc_info=True)

    def hot_copy(self, source: ReadSource) -> HotCopy | None:
        """The verified local copy of a stored file, open, if the hot-file cache holds one."""
        if not source.stored or source.staging_key is not None or not self.hot.enabled:
            return None
        return self.hot.open(source.sha256, source.size)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a file, streamed, from staging or rebuilt from stored frames: never from
        a hot copy, so what jobs read (verify, ingest, repair) is what the store holds."""
        with self._session() as s:
            file = s.get(FileObject, check_sha256(sha256))
            if file is None:
                raise FileNotStored(sha256=sha256)
            source = read_source(file)
        return self._read(source, start, end, hot=False)

    def read_from(self, source: ReadSource, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of the file `source` names, for a download that just found it in the
        catalog (storage/app/repositories.py `locate`): from its hot copy if it has one (and counted
        towards one if not), else with the file's plan cached, no further catalog session."""
        return self._read(source, start, end, hot=True)

    def _read(self, source: ReadSource, start: int, end: int | None, *, hot: bool) -> Iterator[bytes]:
        sha256, size = source.sha256, source.size
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(detail=f"invalid byte range [{start}, {end})")
        # Like a slice: a range running past the end is cut at the end (the HTTP layer answers 416).
        end = size if end is None else min(end, size)
        start = min(start, end)
        # A stored file has a staged copy only while ingest repairs it (it was found damaged and pushed
        # again): the copy is the verified one.
        if source.staging_key is not None:
            try:
                return self._read_staged(sha256, source.staging_key, size, source.staging_sums, start, end)
            except ObjectNotFound:
                # Ingest stored the file and dropped its staging copy between our look and the read.
                if not self._is_stored(sha256):
                    raise
                return self._reader.read_file(sha256, start, end)
        if not source.stored or not hot:
            return self._reader.read_head(source.head, start, end)
        copy = self.hot_copy(source)
        if copy is not None:
            return copy.chunks(start, end)
        chunks = self._reader.read_head(source.head, start, end)
        if (start, end) == (0, size) and self.hot.counts_whole_read(sha256, size):
            return self.hot.keep(sha256, size, chunks, retain=self._stored_among)
        return chunks

    def _stored_among(self, sha256s: list[str]) -> set[str]:
        with self._session() as s:
            return stored_among(s, sha256s)

    def _read_staged(
        self, sha256: str, key: str, size: int, sums: bytes | None, start: int, end: int
    ) -> Iterator[bytes]:
        if sums is None:
            return self._read_staged_unsummed(sha256, key, size, start, end)
        first, stop = block_span(start, end, size)
        chunks = self._store.iter_range(key, first, stop)  # opened now: a missing object fails here
        return checked_range(chunks, sums=sums, sha256=sha256, start=start, end=end, size=size)

    def _read_staged_unsummed(self, sha256: str, key: str, size: int, start: int, end: int) -> Iterator[bytes]:
        """An upload staged by a release that recorded no block sums: prove the whole object against
        its SHA-256 first (one extra pass), then serve the range."""
        whole = hashlib.sha256()
        for chunk in self._store.iter_range(key, 0, size):
            whole.update(chunk)
        if whole.hexdigest() != sha256:
            raise IntegrityError(detail=f"staged file {sha256} is damaged: its bytes hash to {whole.hexdigest()}")
        return self._store.iter_range(key, start, end)

    def _is_stored(self, sha256: str) -> bool:
        with self._session() as s:
            file = s.get(FileObject, sha256)
            return file is not None and file.state == FileState.STORED


__all__ = ["CorruptStagedFile", "Reads"]
