"""Read plans: where every byte of a stored file lives, loaded in a few queries.

A whole file's plan (`file_plan`) is what a reader caches; a range read with no cached plan loads only
the segments the range touches (`range_plan`, by the (file, offset) index) and the tensors they need.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.catalog.db import batches
from storage.catalog.models import FileObject, FileSegment, Frame, Tensor


@dataclass(frozen=True, slots=True)
class FramePlan:
    seq: int
    raw_offset: int
    raw_length: int
    object_key: str
    object_offset: int
    object_length: int
    checksum: int

    @property
    def raw_end(self) -> int:
        return self.raw_offset + self.raw_length


@dataclass(frozen=True, slots=True)
class TensorPlan:
    id: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    base_id: str | None
    chain_depth: int
    frames: tuple[FramePlan, ...]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Each frame's raw [start, end), in order (each frame names its own codec)."""
        return [(f.raw_offset, f.raw_end) for f in self.frames]


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    seq: int
    offset: int
    length: int
    tensor_id: str
    name: str | None

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class FilePlan:
    sha256: str
    size: int
    # In file order; for a range plan, only the segments overlapping its range.
    segments: tuple[SegmentPlan, ...]
    # Every tensor the segments need, their bases (transitively) included.
    tensors: dict[str, TensorPlan]
    starts: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", tuple(s.offset for s in self.segments))

    def segments_in(self, start: int, end: int) -> list[SegmentPlan]:
        """The non-empty segments overlapping [start, end), in order, found by bisection."""
        i = max(bisect_right(self.starts, start) - 1, 0)
        out = []
        while i < len(self.segments) and self.segments[i].offset < end:
            seg = self.segments[i]
            if seg.length and seg.end > start:
                out.append(seg)
            i += 1
        return out

    @property
    def weight(self) -> int:
        """Rough bytes this plan holds in memory, what a plan cache counts: measured with tracemalloc
        on a 100,000-tensor file (95 MB for 100,000 segments, tensors and frames)."""
        frames = sum(len(t.frames) for t in self.tensors.values())
        return 200 + 250 * len(self.segments) + 400 * len(self.tensors) + 300 * frames


@dataclass(frozen=True, slots=True)
class FileHead:
    """What a reader checks before using a cached plan: one primary-key lookup."""

    sha256: str
    size: int
    stored_at: datetime | None
    plan_version: int

    @property
    def plan_key(self) -> tuple[str, datetime | None, int]:
        """A cached plan is valid for this key only. The version counts re-encodings of the file's
        tensors; stored_at tells one life of a file row from the next (GC may delete a file and a
        later push store the same bytes again, with new frames)."""
        return (self.sha256, self.stored_at, self.plan_version)


def frames_covering(tensor: TensorPlan, start: int, end: int) -> range:
    """Indices of the tensor's frames overlapping its raw [start, end), found by bisection (frames are
    in raw order and tile the tensor)."""
    frames = tensor.frames
    first = bisect_right(frames, start, key=lambda f: f.raw_end)
    stop = first
    while stop < len(frames) and frames[stop].raw_offset < end:
        stop += 1
    return range(first, stop)


def file_head(session: Session, sha256: str) -> FileHead | None:
    row = session.execute(
        select(FileObject.size, FileObject.stored_at, FileObject.plan_version).where(FileObject.sha256 == sha256)
    ).first()
    return None if row is None else FileHead(sha256, row[0], row[1], row[2])


def bump_plan_versions(session: Session, tensor_ids: Iterable[str]) -> None:
    """Every file that reads through one of `tensor_ids` gets a new plan version: a tensor's encoding
    (its frames or its base) changed, so plans cached before are stale. `tensor_ids` must include the
    tensors delta-coded against the changed ones: their files' plans hold the changed tensor's plan."""
    for chunk in batches(sorted(set(tensor_ids))):
        users = select(FileSegment.file_sha256).where(FileSegment.tensor_id.in_(chunk)).scalar_subquery()
        session.execute(
            update(FileObject).where(FileObject.sha256.in_(users)).values(plan_version=FileObject.plan_version + 1)
        )


_SEGMENT_COLUMNS = (FileSegment.seq, FileSegment.offset, FileSegment.length, FileSegment.tensor_id, FileSegment.name)


def segments(session: Session, sha256: str) -> tuple[SegmentPlan, ...]:
    rows = session.execute(select(*_SEGMENT_COLUMNS).where(FileSegment.file_sha256 == sha256).order_by(FileSegment.seq))
    return tuple(SegmentPlan(*r) for r in rows)


def segments_overlapping(session: Session, sha256: str, start: int, end: int) -> tuple[SegmentPlan, ...]:
    """The segments holding bytes [start, end): the last one starting at or before `start`, then those
    starting inside the range; two index range scans, whatever the file's segment count."""
    of_file = FileSegment.file_sha256 == sha256
    first = session.execute(
        select(*_SEGMENT_COLUMNS).where(of_file, FileSegment.offset <= start)
        .order_by(FileSegment.offset.desc(), FileSegment.seq.desc()).limit(1)
    ).all()
    rest = session.execute(
        select(*_SEGMENT_COLUMNS).where(of_file, FileSegment.offset > start, FileSegment.offset < end)
        .order_by(FileSegment.offset, FileSegment.seq)
    ).all()
    return tuple(SegmentPlan(*r) for r in [*first, *rest])


def tensor_plans(session: Session, ids: Iterable[str], *, with_bases: bool = True) -> dict[str, TensorPlan]:
    """Plans of `ids` and, with_bases, of every tensor their delta chains need (column rows, not ORM
    objects: a file of 100,000 tensors loads in one pass of plain tuples)."""
    plans: dict[str, TensorPlan] = {}
    wanted = set(ids)
    while wanted:
        batch = sorted(wanted)
        wanted = set()
        for chunk in batches(batch):
            frames: dict[str, list[FramePlan]] = {i: [] for i in chunk}
            rows = session.execute(
                select(Frame.tensor_id, Frame.seq, Frame.raw_offset, Frame.raw_length, Frame.object_key,
                       Frame.object_offset, Frame.object_length, Frame.checksum)
                .where(Frame.tensor_id.in_(chunk)).order_by(Frame.tensor_id, Frame.seq)
            )
            for tensor_id, seq, raw_offset, raw_length, key, object_offset, object_length, crc in rows:
                frames[tensor_id].append(FramePlan(seq, raw_offset, raw_length, key, object_offset, object_length, crc))
            tensors = session.execute(
                select(Tensor.id, Tensor.dtype, Tensor.shape, Tensor.nbytes, Tensor.base_tensor_id,
                       Tensor.chain_depth).where(Tensor.id.in_(chunk))
            )
            for tid, dtype, shape, nbytes, base_id, depth in tensors:
                plans[tid] = TensorPlan(tid, dtype, tuple(shape), nbytes, base_id, depth, tuple(frames[tid]))
                if with_bases and base_id and base_id not in plans:
                    wanted.add(base_id)
    return plans


def file_plan(session: Session, sha256: str) -> FilePlan | None:
    head = file_head(session, sha256)
    if head is None:
        return None
    segs = segments(session, sha256)
    return FilePlan(sha256, head.size, segs, tensor_plans(session, {s.tensor_id for s in segs}))


def range_plan(session: Session, head: FileHead, start: int, end: int) -> FilePlan:
    """The plan of bytes [start, end) only: the segments they touch and the tensors those need."""
    segs = segments_overlapping(session, head.sha256, start, end)
    return FilePlan(head.sha256, head.size, segs, tensor_plans(session, {s.tensor_id for s in segs}))
