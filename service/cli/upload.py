"""Preparing a folder for upload and counting what actually crosses the wire.

The client reads each file twice at most: once to hash it (before anything is sent), once to send it.
Files are handed to the client as `TrackedFile`s, which count the bytes read in each phase and open the
file only while it is being read, so a folder of thousands of files never holds thousands of handles.
A file the server already holds is never read the second time: that is the dedup before transfer.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from storage.core.errors import InvalidInput
from storage.core.names import check_path

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd

# Hashing threads: hashlib releases the GIL on large buffers, so hashing scales with cores.
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
FORBIDDEN_PARTS = frozenset({".git", ".cache"})


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: Path
    path_in_repo: str
    size: int


def list_local_files(folder: Path) -> list[LocalFile]:
    """Every file under `folder` that upload_folder would send: not .git, not the clients' caches."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    found = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        # The client refuses to commit anything under .git or .cache (pull keeps partial files there).
        if p.is_file() and not FORBIDDEN_PARTS & set(p.relative_to(folder).parts)
    }
    kept = list(filter_repo_objects(list(found), ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    for rel in kept:
        check_path(rel)  # the server's own rule, before anything is hashed or created
    files = [LocalFile(found[rel], rel, found[rel].stat().st_size) for rel in kept]
    if not files:
        raise InvalidInput(detail=f"nothing to push: {folder} holds no files")
    return files


@dataclass
class TransferCount:
    """Bytes and files seen per phase; `on_change` is called after every read (progress display)."""

    on_change: Callable[[], None] = lambda: None
    phase: Literal["hash", "send", "done"] = "hash"
    hashed_bytes: int = 0
    sent_bytes: int = 0
    sent_files: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, new_bytes: int, finished: bool) -> None:
        with self._lock:
            if self.phase == "hash":
                self.hashed_bytes += new_bytes
            else:
                self.sent_bytes += new_bytes
                self.sent_files += int(finished)
        self.on_change()


class TrackedFile(io.BufferedIOBase):
    """A read-only file that reports its progress and holds an OS handle only while being read.

    Retries make the client seek back and read again: only bytes beyond the furthest point reached in
    the current phase are counted, so a retried transfer is not counted twice.
    """

    def __init__(self, local: LocalFile, count: TransferCount) -> None:
        super().__init__()
        self.local = local
        self._count = count
        self._pos = 0
        self._handle: io.BufferedReader | None = None
        self._phase = count.phase
        self._furthest = 0
        self._finished = False
        # Bytes handed to the client while sending: 0 for a file the server already held.
        self.sent = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.local.size}[whence]
        self._pos = max(0, origin + offset)
        if self._handle is not None:
            self._handle.seek(self._pos)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self._handle is None:
            self._handle = open(self.local.path, "rb")  # noqa: SIM115 - released at end of file
            self._handle.seek(self._pos)
        data = self._handle.read(-1 if size is None else size)
        self._pos += len(data)
        self._record()
        if not data or self._pos >= self.local.size:
            self.release()
        return data

    read1 = read

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _record(self) -> None:
        if self._count.phase != self._phase:
            self._phase, self._furthest, self._finished = self._count.phase, 0, False
        new = max(0, self._pos - self._furthest)
        self._furthest = max(self._furthest, self._pos)
        finished = self._pos >= self.local.size and not self._finished
        self._finished = self._finished or finished
        if (new or finished) and self._phase != "done":
            if self._phase == "send":
                self.sent += new
            self._count.add(new, finished)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self.release()
        super().close()


def hash_operations(files: list[LocalFile], count: TransferCount) -> list[tuple[CommitOperationAdd, TrackedFile]]:
    """The client's upload operations; building them hashes every file (SHA-256, the LFS oid)."""
    from huggingface_hub import CommitOperationAdd

    def build(local: LocalFile) -> tuple[CommitOperationAdd, TrackedFile]:
        tracked = TrackedFile(local, count)
        op = CommitOperationAdd(path_in_repo=local.path_in_repo, path_or_fileobj=cast(BinaryIO, tracked))
        tracked.release()
        return op, tracked

    with ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="deltahub-hash") as pool:
        return list(pool.map(build, files))
