"""Uploads: stream bytes into staging, hashing them as they pass, and check them against the claim."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.core import keys
from storage.core.errors import InvalidInput, UploadMismatch
from storage.core.faults import crash_point
from storage.core.formats.safetensors import (
    HeaderTruncated,
    SafetensorsError,
    SafetensorsHeader,
    header_length,
    parse_header,
)
from storage.objectstore import ObjectStore


@dataclass(frozen=True, slots=True)
class StagedUpload:
    key: str
    sha256: str
    size: int


class _Counted:
    """Passes chunks through while hashing and counting them, and stops an upload that runs long."""

    def __init__(self, chunks: Iterable[bytes], limit: int | None) -> None:
        self._chunks = chunks
        self._limit = limit
        self.hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._limit is not None and self.size > self._limit:
                raise UploadMismatch(detail=f"more than the declared or allowed {self._limit} bytes")
            self.hash.update(chunk)
            crash_point("upload.mid_stream")
            yield chunk


def stage(
    store: ObjectStore,
    chunks: Iterable[bytes],
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    max_bytes: int | None = None,
) -> StagedUpload:
    """Write `chunks` to a new staging object; on any mismatch nothing is left behind."""
    limit = expected_size if expected_size is not None else max_bytes
    if expected_size is not None and max_bytes is not None and expected_size > max_bytes:
        raise InvalidInput(detail=f"declared size {expected_size} exceeds the limit of {max_bytes} bytes")
    key = keys.staging_key()
    counted = _Counted(chunks, limit)
    store.put_stream(key, counted)
    crash_point("upload.after_staging_put")
    sha256 = counted.hash.hexdigest()
    problem = None
    if expected_size is not None and counted.size != expected_size:
        problem = f"received {counted.size} bytes, declared {expected_size}"
    elif expected_sha256 is not None and sha256 != expected_sha256:
        problem = f"received bytes hash to sha256 {sha256}, declared {expected_sha256}"
    if problem:
        store.delete(key)
        raise UploadMismatch(detail=problem)
    return StagedUpload(key=key, sha256=sha256, size=counted.size)


def read_safetensors_header(store: ObjectStore, key: str, size: int, max_header_bytes: int) -> SafetensorsHeader:
    """Parse the header of a staged safetensors file with two ranged reads (never the whole file)."""
    length = header_length(store.get(key, 0, 8), max_header_bytes=max_header_bytes)
    if size - 8 < length:
        # Refuse before reading a length the file cannot hold.
        raise HeaderTruncated(length=length, available=max(0, size - 8))
    return parse_header(store.get(key, 8, 8 + length), file_size=size)


def sniff_safetensors(store: ObjectStore, key: str, size: int, max_header_bytes: int) -> bool:
    """True when the staged bytes are a valid safetensors file."""
    try:
        read_safetensors_header(store, key, size, max_header_bytes)
    except SafetensorsError:
        return False
    return True
