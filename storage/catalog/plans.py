"""Read plans: where every byte of a stored file lives, loaded in a few queries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
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
    segments: tuple[SegmentPlan, ...]
    # Every tensor the file needs, its bases (transitively) included.
    tensors: dict[str, TensorPlan]


def segments(session: Session, sha256: str) -> tuple[SegmentPlan, ...]:
    rows = session.scalars(select(FileSegment).where(FileSegment.file_sha256 == sha256).order_by(FileSegment.seq))
    return tuple(SegmentPlan(r.seq, r.offset, r.length, r.tensor_id, r.name) for r in rows)


def tensor_plans(session: Session, ids: Iterable[str], *, with_bases: bool = True) -> dict[str, TensorPlan]:
    """Plans of `ids` and, with_bases, of every tensor their delta chains need."""
    plans: dict[str, TensorPlan] = {}
    wanted = set(ids)
    while wanted:
        batch = list(wanted)
        wanted = set()
        for chunk in batches(batch):
            frames: dict[str, list[FramePlan]] = {i: [] for i in chunk}
            for f in session.scalars(select(Frame).where(Frame.tensor_id.in_(chunk)).order_by(Frame.seq)):
                frames[f.tensor_id].append(
                    FramePlan(f.seq, f.raw_offset, f.raw_length, f.object_key, f.object_offset, f.object_length,
                              f.checksum)
                )
            for t in session.scalars(select(Tensor).where(Tensor.id.in_(chunk))):
                plans[t.id] = TensorPlan(
                    t.id, t.dtype, tuple(t.shape), t.nbytes, t.base_tensor_id,
                    t.chain_depth, tuple(frames[t.id]),
                )
                if with_bases and t.base_tensor_id and t.base_tensor_id not in plans:
                    wanted.add(t.base_tensor_id)
    return plans


def file_plan(session: Session, sha256: str) -> FilePlan | None:
    file = session.get(FileObject, sha256)
    if file is None:
        return None
    segs = segments(session, sha256)
    return FilePlan(sha256, file.size, segs, tensor_plans(session, {s.tensor_id for s in segs}))
