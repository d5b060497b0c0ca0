"""Object store in a local directory: the embedded default.

Layout under the root: `objects/<key>` holds each object as a file, `tmp/` holds writes in progress.
Every write goes to a fresh file in `tmp/`, is fsynced, then published under its key in one atomic
step: `os.replace` to overwrite, `os.link` to create only if absent (link fails with FileExistsError
when the name exists, which makes it a create-if-absent that concurrent processes cannot both win).
The directory entry is fsynced afterwards, so a published object survives a crash. `tmp/` and
`objects/` share a filesystem, as link and rename need. A crash mid-write leaves only a file in `tmp/`,
which `remove_stale_temp_files` collects.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from storage.core.errors import StoreError
from storage.objectstore.base import (
    DEFAULT_CHUNK_BYTES,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_range,
    validate_key,
    validate_prefix,
)

_TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def _os_errors(key: str) -> Iterator[None]:
    """Turn filesystem failures (disk full, I/O error, permissions) into StoreError."""
    try:
        yield
    except OSError as exc:
        raise StoreError(detail=f"{key}: {exc}") from exc


# Objects are private model bytes: only the service's own user may list or read them (umask aside).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        # fsync=False is for throwaway stores (tests, benchmarks): atomicity holds, durability does not.
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._fsync = fsync
        with _os_errors(str(self.root)):
            self.root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            for directory in (self._objects, self._tmp):
                directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            # A store made by an earlier release (0755): closing the top directories hides everything below.
            for directory in (self.root, self._objects, self._tmp):
                directory.chmod(PRIVATE_DIR_MODE)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    # -- writes ---------------------------------------------------------------------------------------

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if self._is_object(path):
            return False  # cheap exit; the link below is what decides under a race
        temp, _ = self._write_temp(key, (data,))
        return self._publish(key, temp, path, if_absent=True)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        temp, _ = self._write_temp(key, (data,))
        self._publish(key, temp, path, if_absent=False)

    def put_stream(self, key: str, chunks: Iterable[bytes], *, if_absent: bool = False) -> int:
        path = self._path(key)
        if if_absent and self._is_object(path):
            return sum(len(chunk) for chunk in chunks)
        temp, size = self._write_temp(key, chunks)
        self._publish(key, temp, path, if_absent=if_absent)
        return size

    def _write_temp(self, key: str, chunks: Iterable[bytes]) -> tuple[Path, int]:
        temp = self._tmp / f"{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        size = 0
        with _os_errors(key):
            file = os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "wb")
        try:
            with file:
                for chunk in chunks:  # the caller's own errors propagate as they are
                    with _os_errors(key):
                        file.write(chunk)
                    size += len(chunk)
                with _os_errors(key):
                    file.flush()
                    if self._fsync:
                        os.fsync(file.fileno())
        except BaseException:
            _unlink_quietly(temp)
            raise
        return temp, size

    def _publish(self, key: str, temp: Path, path: Path, *, if_absent: bool) -> bool:
        """Give the fsynced temp file its key; False if `if_absent` and the key was taken."""
        try:
            with _os_errors(key):
                self._make_dirs(key, path.parent)
                try:
                    if if_absent:
                        os.link(temp, path)
                    else:
                        os.replace(temp, path)
                except FileExistsError:
                    if not self._is_object(path):
                        raise _shadowed(key, "a directory of other objects") from None
                    return False
                except (NotADirectoryError, IsADirectoryError) as exc:
                    raise _shadowed(key, "a directory of other objects or an object") from exc
                self._sync_dir(path.parent)
                return True
        finally:
            _unlink_quietly(temp)

    def _make_dirs(self, key: str, directory: Path) -> None:
        missing: list[Path] = []
        while True:  # one stat per level: a concurrent writer may create these directories meanwhile
            try:
                mode = directory.stat().st_mode
            except (FileNotFoundError, NotADirectoryError):
                missing.append(directory)
                directory = directory.parent
                continue
            if stat.S_ISDIR(mode):
                break
            raise _shadowed(key, f"an object at {directory.relative_to(self._objects)}")
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):
                new.mkdir(mode=PRIVATE_DIR_MODE)
            self._sync_dir(new.parent)

    def _sync_dir(self, directory: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        check_range(start, end)
        if end == start:
            return b""
        with self._open(key, path) as file, _os_errors(key):
            length = _seek_range(file, start, end)
            return file.read(length)

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        path = self._path(key)
        check_range(start, end)
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        if end == start:
            return iter(())
        file = self._open(key, path)  # opened now, so a missing object fails at the call
        return self._iter_file(key, file, start, end, chunk_bytes)

    def _iter_file(self, key: str, file: BinaryIO, start: int, end: int | None, chunk_bytes: int) -> Iterator[bytes]:
        with file:
            with _os_errors(key):
                remaining = _seek_range(file, start, end)
            while remaining > 0:
                with _os_errors(key):
                    chunk = file.read(min(chunk_bytes, remaining))
                if not chunk:
                    return  # truncated under us; cannot happen to a published object
                remaining -= len(chunk)
                yield chunk

    def _open(self, key: str, path: Path) -> BinaryIO:
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key=key) from None
        except OSError as exc:
            raise StoreError(detail=f"{key}: {exc}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreError(detail=f"{key}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return _info(key, st)

    def delete(self, key: str) -> None:
        path = self._path(key)
        # No directory fsync: a delete lost in a crash leaves an unreferenced object that GC removes again.
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise StoreError(detail=f"{key}: {exc}") from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        directory, _, partial = prefix.rpartition("/")
        start = self._objects / directory if directory else self._objects
        key_prefix = f"{directory}/" if directory else ""
        return self._walk(start, key_prefix, partial)

    def _walk(self, directory: Path, key_prefix: str, name_prefix: str) -> Iterator[ObjectInfo]:
        # A directory sorts as its name plus '/', which puts its keys exactly where they belong among
        # its siblings' (e.g. 'a.b' < 'a/x' < 'a0'), so a depth-first walk yields keys in sorted order.
        try:
            with os.scandir(directory) as scan:
                entries = [
                    (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e)
                    for e in scan
                    if e.name.startswith(name_prefix)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(detail=f"listing {key_prefix!r}: {exc}") from exc
        entries.sort(key=lambda pair: pair[0])
        for sort_name, entry in entries:
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), f"{key_prefix}{entry.name}/", "")
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we listed
            if stat.S_ISREG(st.st_mode):
                yield _info(key_prefix + entry.name, st)

    # -- maintenance ----------------------------------------------------------------------------------

    def remove_stale_temp_files(self, older_than: timedelta) -> int:
        """Delete writes abandoned by crashed processes; return how many were removed.

        `older_than` must exceed the longest write in progress (a slow upload keeps its temp file).
        """
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        with _os_errors("tmp/"), os.scandir(self._tmp) as scan:
            for entry in scan:
                if not entry.name.endswith(_TEMP_SUFFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _path(self, key: str) -> Path:
        return self._objects / validate_key(key)

    @staticmethod
    def _is_object(path: Path) -> bool:
        try:
            return stat.S_ISREG(path.stat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False


def _seek_range(file: BinaryIO, start: int, end: int | None) -> int:
    """Seek to `start` and return how many bytes of [start, end) the file holds."""
    size = os.fstat(file.fileno()).st_size
    stop = size if end is None else min(end, size)
    if start >= stop:
        return 0
    file.seek(start)
    return stop - start


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC))


def _shadowed(key: str, by: str) -> InvalidKey:
    # S3 allows both 'a' and 'a/b' as keys; a directory cannot, so this backend refuses the second one.
    return InvalidKey(key=key, detail=f"clashes with {by} (a key cannot also be a key's directory here)")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
