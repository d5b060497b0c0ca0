"""The file-format contract: what every format module gives ingest, staging, lineage and the reader.

A format recognises its files by content (magic bytes, structure; never the file name), parses their
structure as hostile input (one InvalidInput subclass per broken rule) through a ranged-read callable,
and cuts the file into segments (tensors with dtype, shape and name, and opaque spans) that cover it
exactly, in order, so the file is rebuilt byte for byte from them. A format that understands tensors
also lists them: family matching and delta bases use their names, shapes and dtypes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from storage.core.dtypes import DType
from storage.core.errors import InternalError
from storage.core.segments import Segment

# read(start, end) -> the file's bytes [start, end): a ranged GET on a staged object, or a stored file.
ReadRange = Callable[[int, int], bytes]

# Tensors one file may list. The largest real shards list a few thousand (a 671B MoE model holds ~91k
# tensors across 163 shards); every tensor costs a catalog row per segment and ~0.9 KB of parser memory
# per tensor, and a 1,000,000-tensor safetensors header (76 MB) took 11.8 s and 872 MB to parse, so
# 100,000 (1.1 s, 105 MB) admits any real file while bounding what one upload may cost.
MAX_TENSORS = 100_000


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """A tensor of a parsed file, as family matching sees it; `offset` is its first byte in the file."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class FileLayout:
    format_id: str
    size: int
    # Covering [0, size) exactly, in order: what ingest stores and the reader rebuilds.
    segments: tuple[Segment, ...]
    # The file's tensors, for family matching; None for a format that does not parse tensors.
    tensors: tuple[TensorEntry, ...] | None
    # Why a format that parses tensors kept this file's content opaque (its reader's refusal: a pickle
    # global it does not admit, ...): for the operator's log at ingest, never an error of the file.
    opaque_because: str | None = None

    def __post_init__(self) -> None:
        check_tiling(self.segments, self.size)


def check_tiling(segments: Sequence[Segment], size: int) -> None:
    """A format's segments must rebuild the file: a gap or overlap here is a bug in the format module."""
    position = 0
    for seq, segment in enumerate(segments):
        if segment.seq != seq or segment.offset != position or segment.length < 0:
            raise InternalError(detail=f"segment {seq} at {segment.offset} does not follow byte {position}")
        position = segment.end
    if position != size:
        raise InternalError(detail=f"segments cover {position} bytes of a {size}-byte file")


class FileFormat(ABC):
    """One file format. Instances are stateless; the registry holds one of each."""

    # Stored in the catalog (file_objects.kind) for every file this format parsed: never reused.
    format_id: ClassVar[str]
    # Whether layouts list tensors (safetensors does; an opaque format does not).
    parses_tensors: ClassVar[bool] = False
    # Leading bytes `recognise` needs.
    probe_bytes: ClassVar[int] = 64

    @abstractmethod
    def recognise(self, head: bytes, size: int) -> bool:
        """Whether the file's first `probe_bytes` bytes (fewer for a short file) look like this format:
        a cheap sniff to pick the parser; `layout` decides."""

    @abstractmethod
    def layout(
        self, read: ReadRange, size: int, *, max_header_bytes: int, max_tensors: int = MAX_TENSORS
    ) -> FileLayout:
        """Parse the file's structure as hostile input, reading at most about `max_header_bytes` of it
        and refusing more than `max_tensors` tensors before building anything per tensor; an
        InvalidInput subclass names the first broken rule."""
