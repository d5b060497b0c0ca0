"""Segments (the contiguous byte ranges a stored file is cut into) and hashing them in one streaming pass.

Which segments a file has is its format's business (storage/core/formats/).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError

# The name of a file's opaque leading header segment (safetensors' length prefix and JSON), kept in the
# catalog: it is never a tensor, so never a delta base's match.
HEADER_SEGMENT = "__header__"
U8 = DTYPES["U8"]


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    offset: int
    length: int
    name: str | None
    dtype: DType
    shape: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.offset + self.length


def opaque(seq: int, offset: int, length: int, name: str | None = None) -> Segment:
    """A span of bytes that is not a tensor, stored as U8 bytes."""
    return Segment(seq, offset, length, name, U8, (length,))


def hash_segments(chunks: Iterable[bytes], segments: Sequence[Segment], size: int, sha256: str) -> list[str]:
    """SHA-256 of each segment's bytes; checks the whole file's SHA-256 and size on the way."""
    whole = hashlib.sha256()
    digests = [hashlib.sha256() for _ in segments]
    index, position = 0, 0
    for chunk in chunks:
        whole.update(chunk)
        view = memoryview(chunk)
        while view:
            while index < len(segments) and position >= segments[index].end:
                index += 1
            if index == len(segments):
                raise IntegrityError(detail=f"staged file {sha256} has bytes past its {size} declared bytes")
            take = min(len(view), segments[index].end - position)
            digests[index].update(view[:take])
            view = view[take:]
            position += take
    if position != size or whole.hexdigest() != sha256:
        raise IntegrityError(
            detail=f"staged file {sha256} changed: {position} bytes hashing to {whole.hexdigest()}"
        )
    return [d.hexdigest() for d in digests]
