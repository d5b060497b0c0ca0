"""Hot files: verified whole copies of often-read stored files on the API process's local disk, so their
reads, whole or by range, are served from one file instead of decoded again.

Filling: the `reads_to_keep`-th whole read of a stored file (DELTAHUB_HOT_CACHE_READS, default 2: a
file downloaded once costs no disk) is written, as it streams to the client, into a temporary file (mode
0600) of the cache directory while it is hashed; only when it is exactly the file's size and its SHA-256
is the file's id is it renamed into place (atomic), so the cache holds no byte that was not proven.
Least recently used copies are deleted to keep the total within `max_bytes` (DELTAHUB_HOT_CACHE_BYTES,
0: no cache).

Serving: a copy is opened only after the catalog named the file (a download finds its entry first), and
opening checks its size. A copy found on disk at start, changed on disk since it was verified (size or
mtime), or last hashed more than REVERIFY_SECONDS ago is hashed again before it is used. A copy failing
a check is deleted and the read falls back to reconstruction, which writes it again. GC deletes the
copies of the files it drops (`drop`); the cache also sweeps out copies of files the catalog no longer
stores (`retain`, at start and after every copy it adds).

The index is per process: two processes sharing a directory each keep their own budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[0-9a-f]{64}$")
# Chunks a copy is read in: 1 MiB keeps a whole read at page-cache speed with few thread hops.
CHUNK_BYTES = 1 << 20
# Whole-read counts kept for files not yet cached; past it the counts start again (a bound, not an LRU).
MAX_COUNTED = 100_000


# A copy is hashed again when its last check is older than this, even if nothing about it changed: damage
# that keeps size and mtime (a bad disk block) is served for at most this long. Hashing runs at ~600 MB/s
# on the reference machine, so a hot 1 GB file costs ~2 s of one core an hour.
REVERIFY_SECONDS = 3600.0


@dataclass(slots=True)
class _Copy:
    size: int
    # (st_size, st_mtime_ns) when its bytes were last hashed; None: not hashed by this process yet.
    verified: tuple[int, int] | None
    verified_at: float = 0.0


class HotCopy:
    """An open, verified copy of a stored file; `chunks` closes it when done."""

    def __init__(self, sha256: str, size: int, fd: int) -> None:
        self.sha256, self.size, self.fd = sha256, size, fd

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        try:
            at = start
            while at < end:
                chunk = os.pread(self.fd, min(CHUNK_BYTES, end - at), at)
                if not chunk:
                    raise OSError(f"hot copy of {self.sha256} ended at {at} of {self.size} bytes")
                at += len(chunk)
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a response that never started its body still gives the descriptor back
        self.close()


class HotFiles:
    def __init__(self, directory: Path, max_bytes: int, reads_to_keep: int = 2) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.reads_to_keep = max(reads_to_keep, 1)
        self._copies: OrderedDict[str, _Copy] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._reads: Counter[str] = Counter()
        self._writing: set[str] = set()
        self._lock = threading.Lock()
        if self.enabled:
            self._load()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._copies

    def _path(self, sha256: str) -> Path:
        return self.directory / sha256

    def _load(self) -> None:
        """Index the copies a previous run left (oldest written first, all to be hashed before use) and
        delete its unfinished temporary files."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = []
        for entry in os.scandir(self.directory):
            if not entry.is_file(follow_symlinks=False):
                continue
            if _NAME.match(entry.name):
                st = entry.stat(follow_symlinks=False)
                found.append((st.st_mtime_ns, entry.name, st.st_size))
            elif entry.name.endswith(".tmp"):
                _unlink(Path(entry.path))
        for _, name, size in sorted(found):
            self._copies[name] = _Copy(size, None)
            self._bytes += size
        with self._lock:
            self._evict(0)

    def open(self, sha256: str, size: int) -> HotCopy | None:
        """The verified copy of the file, opened; None when there is none (or it was not what it claims:
        then it is deleted and the file counts as hot, so the read that falls back writes it again)."""
        with self._lock:
            copy = self._copies.get(sha256)
            if copy is None:
                return None
            self._copies.move_to_end(sha256)
        try:
            fd = os.open(self._path(sha256), os.O_RDONLY)
        except FileNotFoundError:
            self.drop(sha256)
            return None
        st = os.fstat(fd)
        stamp = (st.st_size, st.st_mtime_ns)
        now = time.monotonic()
        recheck = copy.verified != stamp or now - copy.verified_at > REVERIFY_SECONDS
        if st.st_size != size or copy.size != size or (recheck and not _hashes_to(fd, sha256)):
            os.close(fd)
            log.warning("hot copy of %s is damaged (%d bytes on disk, %d expected): rebuilding it",
                        sha256, st.st_size, size)
            self.drop(sha256)
            with self._lock:
                self._reads[sha256] = self.reads_to_keep
            return None
        if recheck:
            copy.verified, copy.verified_at = stamp, now
        return HotCopy(sha256, size, fd)

    def counts_whole_read(self, sha256: str, size: int) -> bool:
        """Count a whole read of a stored file; True when this read's bytes should be kept (`keep`)."""
        if not self.enabled or size > self.max_bytes:
            return False
        with self._lock:
            if sha256 in self._copies or sha256 in self._writing:
                return False
            if len(self._reads) >= MAX_COUNTED:
                self._reads.clear()
            self._reads[sha256] += 1
            return self._reads[sha256] >= self.reads_to_keep

    def keep(
        self, sha256: str, size: int, chunks: Iterator[bytes], *, retain: Callable[[list[str]], set[str]] | None = None
    ) -> Iterator[bytes]:
        """`chunks` (the whole file's reconstruction) passed through, and kept as the file's copy if they
        are all of it and hash to its id. A failure to write only stops the copy, never the read.
        `retain` (the catalog's "which of these are still stored") sweeps the cache after a copy is added."""
        # Claimed here, when the body starts, not when the read was counted: a body never iterated (the
        # client left first) runs none of this, so it must not hold the claim.
        with self._lock:
            claimed = sha256 not in self._writing and sha256 not in self._copies
            if claimed:
                self._writing.add(sha256)
        if not claimed:  # another read is writing the copy, or wrote it
            yield from chunks
            return
        temp = self.directory / f".{sha256}.{uuid.uuid4().hex}.tmp"
        fd: int | None = None
        digest, written, complete = hashlib.sha256(), 0, False
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            log.warning("cannot write a hot copy under %s", self.directory, exc_info=True)
        try:
            for chunk in chunks:
                if fd is not None:
                    try:
                        digest.update(chunk)
                        _write_all(fd, chunk)
                        written += len(chunk)
                    except OSError:
                        log.warning("writing the hot copy of %s failed", sha256, exc_info=True)
                        os.close(fd)
                        fd = None
                yield chunk
            complete = True
        finally:
            if fd is not None:
                os.close(fd)
            kept = fd is not None and complete and written == size and digest.hexdigest() == sha256
            if kept:
                self._admit(sha256, temp, size)
            else:
                _unlink(temp)
            with self._lock:
                self._writing.discard(sha256)
            if kept and retain is not None:
                self.retain(retain)

    def _admit(self, sha256: str, temp: Path, size: int) -> None:
        with self._lock:
            self._evict(size)
            if self._bytes + size > self.max_bytes:
                _unlink(temp)
                return
            try:
                os.replace(temp, self._path(sha256))
            except OSError:
                log.warning("keeping the hot copy of %s failed", sha256, exc_info=True)
                _unlink(temp)
                return
            st = os.stat(self._path(sha256))
            old = self._copies.pop(sha256, None)
            self._bytes += size - (old.size if old else 0)
            self._copies[sha256] = _Copy(size, (st.st_size, st.st_mtime_ns), time.monotonic())
            self._reads.pop(sha256, None)

    def _evict(self, room: int) -> None:
        """Delete least recently used copies until `room` more bytes fit (the lock is held)."""
        while self._copies and self._bytes + room > self.max_bytes:
            sha256, copy = self._copies.popitem(last=False)
            self._bytes -= copy.size
            _unlink(self._path(sha256))

    def drop(self, sha256: str) -> None:
        """Forget and delete the file's copy (the file was deleted, or its copy is damaged), whether this
        process indexed it or another one sharing the directory wrote it."""
        if not self.enabled or not _NAME.match(sha256):
            return
        with self._lock:
            copy = self._copies.pop(sha256, None)
            if copy is not None:
                self._bytes -= copy.size
            self._reads.pop(sha256, None)
            _unlink(self._path(sha256))

    def retain(self, stored: Callable[[list[str]], set[str]]) -> None:
        """Drop the copies of files that `stored` (given the cached ids) does not report as stored."""
        cached = list(self._copies)
        if not cached:
            return
        keep = stored(cached)
        for sha256 in cached:
            if sha256 not in keep:
                self.drop(sha256)

    def cached(self) -> Iterable[str]:
        return list(self._copies)


def _hashes_to(fd: int, sha256: str) -> bool:
    digest, at = hashlib.sha256(), 0
    while chunk := os.pread(fd, 8 << 20, at):
        digest.update(chunk)
        at += len(chunk)
    return digest.hexdigest() == sha256


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
