"""The object store contract every backend keeps.

Objects are immutable in practice (keys are content-addressed), so the contract is small: create if
absent, overwrite, ranged reads, head, delete, list. Every write is atomic: a reader sees the whole
object or nothing, never a prefix of it. Vendor errors never cross this interface: a backend raises
`ObjectNotFound`, `InvalidKey`, `StoreError` or `TransientStoreError` (worth a retry) and nothing else,
except that an exception raised by a caller's own chunk iterator passes through unchanged.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.core.errors import InternalError, InvalidInput, NotFound

# S3 allows 1024 bytes per key; half of it leaves room for a deployment's key prefix.
MAX_KEY_LENGTH = 512
# Filesystems cap a file name at 255 bytes; a longer segment could not be stored by the local backend.
MAX_SEGMENT_LENGTH = 255
DEFAULT_CHUNK_BYTES = 1 << 20

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_PREFIX_CHARS = re.compile(r"[A-Za-z0-9._/-]*")


class ObjectNotFound(NotFound):
    """object not found: {key}"""


class InvalidKey(InvalidInput):
    """invalid object key {key!r}: {detail}"""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime  # timezone-aware, UTC


def validate_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise InvalidKey.

    A key is '/'-separated segments of [A-Za-z0-9._-], none of them '.' or '..' nor longer than 255, so
    that it maps onto a file path without escaping the store's directory and means the same thing on
    every backend.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(key=key, detail="empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(key=key, detail=f"longer than {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        _validate_segment(key, segment)
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it can start a valid key, else raise InvalidKey.

    A list prefix is a plain string prefix (as on S3), so its last segment may be partial; the segments
    before it must be whole valid segments.
    """
    if not isinstance(prefix, str) or not _PREFIX_CHARS.fullmatch(prefix):
        raise InvalidKey(key=prefix, detail="prefix has characters outside [A-Za-z0-9._/-]")
    if len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKey(key=prefix, detail=f"longer than {MAX_KEY_LENGTH} characters")
    directories = prefix.split("/")[:-1]
    for segment in directories:
        _validate_segment(prefix, segment)
    return prefix


def _validate_segment(key: str, segment: str) -> None:
    if not segment:
        raise InvalidKey(key=key, detail="empty segment (leading, trailing or doubled '/')")
    if segment in (".", ".."):
        raise InvalidKey(key=key, detail=f"segment {segment!r} is not allowed")
    if not _SEGMENT.fullmatch(segment):
        raise InvalidKey(key=key, detail="characters outside [A-Za-z0-9._-]")
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise InvalidKey(key=key, detail=f"a segment is longer than {MAX_SEGMENT_LENGTH} characters")


def check_range(start: int, end: int | None) -> None:
    """Reject byte ranges that make no sense; a range past the object's end is fine (it is clipped).

    Ranges come from deltahub's own plans (the hub checks a user's range first), so a bad one is a bug:
    an InternalError, retried and logged, never a 400 that fails a user's file for good."""
    if start < 0:
        raise InternalError(detail=f"range start {start} is negative")
    if end is not None and end < start:
        raise InternalError(detail=f"range end {end} is before start {start}")


class ObjectStore(ABC):
    """A flat namespace of immutable byte objects under validated keys."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` unless the key exists; atomic against concurrent writers.

        Returns True if this call created the object, False if it already existed (keys are
        content-addressed, so an existing object holds the same bytes and is left alone).
        """

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically replacing any existing object."""

    @abstractmethod
    def put_stream(self, key: str, chunks: Iterable[bytes], *, if_absent: bool = False) -> int:
        """Store the concatenation of `chunks` under `key` in bounded memory; return its length.

        The object becomes visible only once complete; if `chunks` raises, nothing is stored and the
        exception propagates. With `if_absent`, an existing object is kept (the chunks are still
        consumed in full, so a caller hashing them as they pass sees every byte).
        """

    @abstractmethod
    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the object; `end` None or past the size reads to the end.

        An empty range (start == end) returns b"" without touching the store. Raises ObjectNotFound.
        """

    @abstractmethod
    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        """Stream bytes [start, end) in chunks of at most `chunk_bytes`.

        Raises ObjectNotFound when the first chunk is requested if the object does not exist.
        """

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size and time of the object, or None if it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def remove_stale_temp_files(self, older_than: timedelta) -> int:
        """Delete the partial writes of crashed processes that no key names, older than `older_than`;
        return how many. Only stores that write through temporary files have any (the local directory's
        tmp/); an S3 write is atomic and a failed multipart upload is aborted by the writer."""
        return 0
