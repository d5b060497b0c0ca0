"""Cutting a staged file into segments and hashing each, in one streaming pass."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError
from storage.core.formats.safetensors import SafetensorsHeader

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


def safetensors_segments(header: SafetensorsHeader) -> list[Segment]:
    """The header (length prefix + JSON, verbatim) then every tensor in offset order."""
    out = [Segment(0, 0, header.data_offset, HEADER_SEGMENT, U8, (header.data_offset,))]
    for seq, t in enumerate(header.tensors, start=1):
        out.append(Segment(seq, header.data_offset + t.start, t.nbytes, t.name, t.dtype, t.shape))
    return out


def blob_segments(size: int) -> list[Segment]:
    return [Segment(0, 0, size, None, U8, (size,))]


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
