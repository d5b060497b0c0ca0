"""Resumable, verified downloads for `deltahub pull`.

Each file is fetched from the hub's `resolve` route into a partial file under
LOCAL_DIR/.cache/deltahub/download, named by the file's SHA-256, and hashed as it arrives. An interrupted
pull leaves the partial file; the next one hashes what is there and asks only for the rest (a Range
request). A file is moved into place only once its size and SHA-256 match the server's listing, so
LOCAL_DIR never holds a file that differs from what was pushed. (The Hugging Face client no longer
resumes across runs: it downloads to a fresh temporary file each time.)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from service.cli.client import HTTP_TIMEOUT_SECONDS, error_for_status
from service.cli.common import Interrupted, ServerUnreachable
from storage.core.names import check_path

PARTIAL_DIR = Path(".cache") / "deltahub" / "download"
CHUNK_BYTES = 1 << 20
# A dropped connection is retried from where it stopped; after this many drops in a row the pull fails
# (and a later pull still resumes).
MAX_RESUMES = 3


@dataclass(frozen=True, slots=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None


class Downloader:
    def __init__(
        self,
        endpoint: str,
        token: str | None,
        repo_id: str,
        commit: str,
        local_dir: Path,
        advance: Callable[[int], None],
        stop: threading.Event | None = None,
    ) -> None:
        self.base = f"{endpoint.rstrip('/')}/{repo_id}/resolve/{commit}/"
        self.local_dir = local_dir
        self.advance = advance
        # Set on Ctrl-C: every loop over bytes checks it, so a download stops within one network read.
        self.stop = stop or threading.Event()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Redirects are followed; httpx drops the Authorization header when one leaves this server.
        self.http = httpx.Client(headers=headers, timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=True)

    def close(self) -> None:
        self.http.close()
        # Leave no trace of the partial-download area once it is empty (a finished pull).
        folder = self.local_dir / PARTIAL_DIR
        for empty in (folder, folder.parent, folder.parent.parent):
            try:
                empty.rmdir()
            except OSError:
                break

    def fetch(self, remote: RemoteFile) -> bool:
        """Put `remote` in place; False when the bytes received do not match its size and SHA-256."""
        target = self.local_dir / check_path(remote.path)
        if target.is_file() and target.stat().st_size == remote.size:
            if self._matches(target, remote):
                return True  # already complete (an earlier pull, or the same bytes)
            self.advance(-remote.size)
        key = remote.sha256 or hashlib.sha256(remote.path.encode()).hexdigest()
        partial = self.local_dir / PARTIAL_DIR / f"{key}.partial"
        partial.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        if partial.exists() and partial.stat().st_size <= remote.size:
            self._hash_into(partial, digest)
        else:
            partial.write_bytes(b"")
        for attempt in range(MAX_RESUMES + 1):
            try:
                digest = self._receive(remote, partial, digest)
                break
            except httpx.TransportError as exc:
                if attempt == MAX_RESUMES:
                    raise ServerUnreachable(endpoint=self.base, reason=str(exc) or type(exc).__name__) from exc
                # What reached the disk is the truth: hash it again rather than trust the interrupted state.
                digest = hashlib.sha256()
                self._hash_into(partial, digest, count=False)
        if partial.stat().st_size != remote.size or (remote.sha256 and digest.hexdigest() != remote.sha256):
            partial.unlink()
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)
        return True

    def _receive(self, remote: RemoteFile, partial: Path, digest: hashlib._Hash) -> hashlib._Hash:
        """Append the rest of the file to `partial`; returns the digest of everything in it."""
        have = partial.stat().st_size
        if have == remote.size:
            return digest
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.http.stream("GET", self.base + quote(remote.path, safe="/"), headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                message = response.headers.get("X-Error-Message") or response.text[:200]
                raise error_for_status(response.status_code, message)
            mode = "ab"
            if have and response.status_code != 206:  # the server sent the whole file: start over
                self.advance(-have)
                digest, mode = hashlib.sha256(), "wb"
            with open(partial, mode) as out:
                # As the network delivers, not in CHUNK_BYTES: on a slow link a 1 MiB chunk takes seconds.
                for chunk in self._unless_stopped(response.iter_bytes()):
                    out.write(chunk)
                    digest.update(chunk)
                    self.advance(len(chunk))
        return digest

    def _matches(self, path: Path, remote: RemoteFile) -> bool:
        digest = hashlib.sha256()
        self._hash_into(path, digest)
        return remote.sha256 is None or digest.hexdigest() == remote.sha256

    def _hash_into(self, path: Path, digest: hashlib._Hash, *, count: bool = True) -> None:
        with open(path, "rb") as handle:
            for chunk in self._unless_stopped(iter(lambda: handle.read(CHUNK_BYTES), b"")):
                digest.update(chunk)
                if count:
                    self.advance(len(chunk))

    def _unless_stopped(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self.stop.is_set():
                raise Interrupted(detail="Ctrl-C")  # what is written so far stays: the next pull resumes from it
            yield chunk
