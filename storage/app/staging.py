"""Uploads: stream bytes into staging, hashing them as they pass, and check them against the claim."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.core import keys
from storage.core.blocksums import BlockSums
from storage.core.errors import InvalidInput, UploadMismatch
from storage.core.faults import crash_point
from storage.core.formats import registry
from storage.core.formats.base import MAX_TENSORS, FileFormat, FileLayout, ReadRange
from storage.objectstore import ObjectStore


@dataclass(frozen=True, slots=True)
class StagedUpload:
    key: str
    sha256: str
    size: int
    # Checksums of its blocks, for reads served from staging (storage/core/blocksums.py).
    block_sums: bytes


class _Counted:
    """Passes chunks through while hashing and counting them, and stops an upload that runs long."""

    def __init__(self, chunks: Iterable[bytes], limit: int | None) -> None:
        self._chunks = chunks
        self._limit = limit
        self.hash = hashlib.sha256()
        self.blocks = BlockSums()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self._limit is not None and self.size > self._limit:
                raise UploadMismatch(detail=f"more than the declared or allowed {self._limit} bytes")
            self.hash.update(chunk)
            self.blocks.update(chunk)
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
    return StagedUpload(key=key, sha256=sha256, size=counted.size, block_sums=counted.blocks.digest())


def verify_staged(
    key: str, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
) -> StagedUpload:
    """The staging record of bytes already stored at `key` by another use case (a Xet xorb that is
    exactly one file), from one read of them: hashed and block-summed as `stage` would, nothing
    written. UploadMismatch on a mismatch; the object is left to its owner either way."""
    counted = _Counted(chunks, expected_size)
    for _ in counted:
        pass
    sha256 = counted.hash.hexdigest()
    if expected_size is not None and counted.size != expected_size:
        raise UploadMismatch(detail=f"received {counted.size} bytes, declared {expected_size}")
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise UploadMismatch(detail=f"received bytes hash to sha256 {sha256}, declared {expected_sha256}")
    return StagedUpload(key=key, sha256=sha256, size=counted.size, block_sums=counted.blocks.digest())


def staged_reader(store: ObjectStore, key: str) -> ReadRange:
    """Ranged reads of a staged object: formats read headers this way, never the whole file."""
    return lambda start, end: store.get(key, start, end)


def sniff_staged_format(store: ObjectStore, key: str, size: int) -> FileFormat:
    """The format the staged bytes look like, from their first few bytes only (blob when no format
    claims them). An upload request records this and nothing more: the header is parsed by ingest (or
    by a commit naming a `.safetensors` path), never while the bytes stream in."""
    probe = registry.probe_bytes()
    head = store.get(key, 0, min(size, probe)) if probe and size else b""
    return registry.sniff_format(head, size)


def detect_staged_format(
    store: ObjectStore, key: str, size: int, max_header_bytes: int, max_tensors: int = MAX_TENSORS
) -> FileFormat:
    """The format of the staged bytes, by their content, parsed (blob when no format claims them)."""
    return registry.detect_format(
        staged_reader(store, key), size, max_header_bytes=max_header_bytes, max_tensors=max_tensors
    )


def read_staged_layout(
    store: ObjectStore, key: str, format_id: str, size: int, max_header_bytes: int, max_tensors: int = MAX_TENSORS
) -> FileLayout:
    """The segments (and tensors) of a staged file of format `format_id`, parsed as hostile input."""
    return registry.read_layout(
        format_id, staged_reader(store, key), size, max_header_bytes=max_header_bytes, max_tensors=max_tensors
    )
