"""Encoding tensors into frames and writing them to the store, in bounded memory.

A tensor is read and encoded a window at a time (a few frames), so a multi-GB tensor never sits in
memory whole. Every frame is decoded and compared with the original before it is kept (the codecs'
`verify`), and objects are written before anything in the catalog points at them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from storage.catalog import damage, files
from storage.catalog.plans import FramePlan, TensorPlan
from storage.core import casts
from storage.core.dtypes import DTYPES, DType
from storage.core.families import TensorShape, shared_bytes
from storage.core.faults import crash_point
from storage.core.layouts import Transposed, transposed_of
from storage.core.packs import PackBuilder
from storage.core.segments import Segment
from storage.core.windows import encode_against_prefix
from workers.jobs.context import JobContext

# Raw bytes encoded per step: 4 frames of the default 4 MiB, so a window and its base use ~32 MiB.
WINDOW_FRAMES = 4
# Frames of at least this many encoded bytes are objects of their own; smaller ones share packs.
SOLO_FRAME_BYTES = 1 << 20

ReadRange = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class TensorJob:
    segment: Segment
    tensor_id: str
    base: TensorPlan | None
    base_plans: dict[str, TensorPlan] | None
    # Bytes of the tensor the base covers (all of them, unless the tensor grew rows).
    shared: int = 0
    # How the base is read: None in place, or transposed (an ONNX MatMul initializer against its Linear).
    layout: Transposed | None = None


@dataclass(frozen=True, slots=True)
class PendingFrame:
    seq: int
    raw_offset: int
    raw_length: int
    ticket: int
    length: int
    checksum: int


@dataclass(frozen=True, slots=True)
class PendingTensor:
    """An encoded tensor whose frames may still sit in the pack being filled (placed at `finish`)."""

    plan: TensorPlan  # with no frames yet
    frames: tuple[PendingFrame, ...]

    @property
    def encoded_bytes(self) -> int:
        return sum(f.length for f in self.frames)


class ObjectWriter:
    """Packs frame blobs and writes each sealed object at once (put-if-absent: retries are free)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.packer = PackBuilder(target_bytes=ctx.settings.pack_target_bytes, solo_bytes=SOLO_FRAME_BYTES)
        self.objects: list[files.NewObject] = []

    def add(self, blob: bytes) -> int:
        ticket = self.packer.add(blob)
        self.flush()
        return ticket

    def flush(self, *, seal: bool = False) -> None:
        if seal:
            self.packer.seal()
        for obj in self.packer.take_sealed():
            self.ctx.store.put_if_absent(obj.key, obj.data)
            crash_point("ingest.after_object_write")
            self.objects.append(files.NewObject(obj.key, len(obj.data), obj.kind))

    def finish(self, tensors: Sequence[PendingTensor]) -> list[TensorPlan]:
        """Seal and write the last pack, then give each tensor its frames' places.

        Placing is deferred to here so that small tensors share packs across the whole file.
        """
        self.flush(seal=True)
        out = []
        for tensor in tensors:
            frames = []
            for p in tensor.frames:
                placed = self.packer.placement(p.ticket)
                frames.append(FramePlan(p.seq, p.raw_offset, p.raw_length, placed.key, placed.offset,
                                        placed.length, p.checksum))
            out.append(replace(tensor.plan, frames=tuple(frames)))
        return out


def plan_tensors(
    ctx: JobContext, segments: Sequence[Segment], digests: Sequence[str], base: BaseTensors | None
) -> list[TensorJob]:
    """The segments whose bytes are not stored yet, each with the base tensor to delta against.

    A tensor recorded damaged counts as not stored, and is coded plain: its dependents keep their depth
    bound whatever base it had. No tensor is coded against a damaged one."""
    with ctx.session() as s:
        broken = damage.damaged_tensors(s)
        stored = files.existing_tensors(s, digests) - broken
    jobs: list[TensorJob] = []
    planned: set[str] = set()
    for segment, digest in zip(segments, digests, strict=True):
        if digest in stored or digest in planned:
            continue
        planned.add(digest)
        usable = base is not None and digest not in broken
        found = base.for_segment(segment, ctx.settings.max_chain_depth, avoid=broken) if base and usable else None
        if found is None:
            jobs.append(TensorJob(segment, digest, None, None))
        else:
            layout = base.layout_for(segment, found[0]) if base else None
            jobs.append(TensorJob(segment, digest, found[0], base.plans if base else None, found[1], layout))
    return jobs


@dataclass(frozen=True, slots=True)
class BaseTensors:
    """The chosen base model's tensors, by the name of the new file's tensor each is matched to
    (storage/core/families.py: `match_tensors`), with the plans their chains need. `sha256` is the base
    file that supplies most of them (a base model may be several shards)."""

    sha256: str
    score: float
    by_name: dict[str, TensorPlan]
    plans: dict[str, TensorPlan]
    # Names of the new file's tensors measured closest to their base read transposed.
    transposed: frozenset[str] = frozenset()

    def layout_for(self, segment: Segment, base: TensorPlan) -> Transposed | None:
        """How `segment` reads `base`: transposed when it was measured so (and the shapes say it can)."""
        return transposed_of(segment.shape, base.shape) if (segment.name or "") in self.transposed else None

    def for_segment(
        self, segment: Segment, max_depth: int, avoid: frozenset[str] | set[str] = frozenset()
    ) -> tuple[TensorPlan, int] | None:
        """The base tensor for `segment` and how many of its leading bytes the base covers; None when
        the candidate's chain passes through a tensor in `avoid` (damaged ones)."""
        candidate = self.by_name.get(segment.name or "")
        if candidate is not None and avoid and self._chain_meets(candidate, avoid):
            return None
        # A dtype that predicts ours and a shape sharing whole rows, or no delta; a chain at its bound
        # hands over to its base.
        transposed = (segment.name or "") in self.transposed
        while candidate is not None:
            shared = _transposed_bytes(candidate, segment) if transposed else shared_prefix(
                candidate, segment.dtype, segment.shape)  # fmt: skip
            if shared == 0:
                return None
            if candidate.chain_depth + 1 <= max_depth:
                return candidate, shared
            candidate = self.plans.get(candidate.base_id) if candidate.base_id else None
        return None


    def _chain_meets(self, candidate: TensorPlan, avoid: frozenset[str] | set[str]) -> bool:
        current: TensorPlan | None = candidate
        while current is not None:
            if current.id in avoid:
                return True
            current = self.plans.get(current.base_id) if current.base_id else None
        return False


def encode_windows(
    ctx: JobContext,
    writer: ObjectWriter,
    *,
    tensor_id: str,
    dtype: DType,
    shape: tuple[int, ...],
    nbytes: int,
    read_raw: ReadRange,
    read_base: ReadRange | None,
    base: TensorPlan | None,
    shared: int | None = None,
    layout: Transposed | None = None,
) -> PendingTensor:
    """Encode one tensor window by window; each window picks its smallest codec (its frames say which,
    and against which base dtype: `read_base` gives the base's own bytes, cast-predicted by the frames).
    Only the first `shared` bytes (default: all) have a counterpart in the base; the rest are coded alone.
    With `layout`, `read_base` gathers the base's elements through it and the delta frames record it."""
    frame_bytes = ctx.settings.frame_bytes
    window = frame_bytes * WINDOW_FRAMES
    base_dtype = DTYPES[base.dtype] if (base is not None and read_base is not None) else None
    pending: list[PendingFrame] = []
    delta_used = False
    windows = encode_against_prefix(
        read_raw, nbytes, dtype, read_base=read_base if base_dtype else None, base_dtype=base_dtype,
        shared=nbytes if shared is None else shared, window=window, frame_bytes=frame_bytes, layout=layout,
    )
    for start, encoded in windows:
        delta_used = delta_used or encoded.base_dtype is not None
        for (a, b), blob, checksum in zip(encoded.spans, encoded.frames, encoded.checksums, strict=True):
            pending.append(PendingFrame(len(pending), start + a, b - a, writer.add(blob), len(blob), checksum))
            crash_point("ingest.mid_encode")
    plan = TensorPlan(
        tensor_id, dtype.name, shape, nbytes,
        base.id if (delta_used and base) else None,
        (base.chain_depth + 1) if (delta_used and base) else 0,
        (),
    )
    return PendingTensor(plan, tuple(pending))


def encode_and_write(ctx: JobContext, staging_key: str, jobs: Sequence[TensorJob]) -> files.Written:
    writer = ObjectWriter(ctx)
    tensors: list[PendingTensor] = []
    for job in jobs:
        seg = job.segment

        def read_raw(a: int, b: int, seg: Segment = seg) -> bytes:
            return ctx.store.get(staging_key, seg.offset + a, seg.offset + b)

        read_base = None
        if job.base is not None and job.base_plans is not None:
            read_base = base_reader(ctx, job.base_plans, job.base.id, seg.dtype, job.layout)
        tensors.append(
            encode_windows(
                ctx, writer, tensor_id=job.tensor_id, dtype=seg.dtype, shape=seg.shape, nbytes=seg.length,
                read_raw=read_raw, read_base=read_base, base=job.base, shared=job.shared, layout=job.layout,
            )
        )
    placed = writer.finish(tensors)
    return files.Written(tensors=placed, objects=writer.objects)


def _transposed_bytes(base: TensorPlan, segment: Segment) -> int:
    """Bytes of `segment` a base holds transposed: all of them when its shape is the transpose and its
    dtype predicts the segment's, else 0 (a chain handing over to a base of another shape ends)."""
    if transposed_of(segment.shape, base.shape) is None or not casts.can_predict(DTYPES[base.dtype], segment.dtype):
        return 0
    return segment.length


def shared_prefix(base: TensorPlan, dtype: DType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of this dtype and shape that `base` holds at the same elements (0: none)."""
    return shared_bytes(TensorShape("", dtype, shape), TensorShape("", DTYPES[base.dtype], base.shape))


def predictable(base: TensorPlan, dtype: DType, nbytes: int) -> bool:
    """Whether `base` can serve as the base of a tensor of this dtype and byte length."""
    base_dtype = DTYPES[base.dtype]
    return casts.can_predict(base_dtype, dtype) and base.nbytes == nbytes * casts.ratio(base_dtype, dtype)


def base_reader(
    ctx: JobContext, base_plans: dict[str, TensorPlan], base_id: str, dtype: DType, layout: Transposed | None = None
) -> ReadRange:
    """For target bytes [a, b), the base's own bytes for the same elements ([a·r, b·r) of a wider base;
    with a layout, gathered through it from the whole base, which the reader holds while it lives)."""
    return ctx.reader.base_range_reader(base_plans, base_id, dtype, layout)
