"""Reconstruction: rebuild any byte range of a stored file from its frames, streamed.

plan (which frames cover the range) → fetch (ranged GETs, a few frames ahead on a thread pool) → decode
(with the base's bytes for the same range, from a bounded cache of decoded frames) → stream.
Memory is bounded by the frames in flight and the caches, never by the file size.

Plans: a whole-file read builds the file's plan once and caches it (storage/app/plancache.py, keyed so
a re-encode is never read through a stale plan); a range read uses the cached plan, or loads only the
segments it touches and has the whole plan built in the background for the ranges after it. Segments
and frames are found by bisection.

Integrity: every frame is checked on decode (its header CRC, then the CRC-32 of its decoded bytes
against both the frame's header and the catalog), and the pieces of a read must tile the range asked
for exactly, so no byte is served unchecked and a gap in the catalog is an error, never a short body.
A whole-file read is not hashed again: the file's SHA-256 was proven at ingest, and `admin verify`
(workers/jobs/verify.py) rebuilds every file and checks it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

from storage.app.plancache import PlanCache
from storage.catalog import plans
from storage.catalog.db import session_scope
from storage.core import casts, layouts
from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import FileNotStored, IntegrityError
from storage.core.frames import FrameHeader, base_ratio, base_window, checksum, decode_frame, read_frame_header
from storage.core.layouts import Transposed
from storage.objectstore import ObjectStore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# Frames decoded ahead of the one being streamed: enough to overlap a GET with a decode on 2 cores
# while holding at most (READ_AHEAD + 1) × max(frame_bytes, GROUP_BYTES) of decoded data per reader.
READ_AHEAD = 4
# Slices of small frames (a file of many small tensors) are decoded and sent together, up to this many
# bytes: one pool task and one write per group, not one per 64-byte tensor.
GROUP_BYTES = 1 << 20
# The first group is smaller: the first byte waits only for it.
FIRST_GROUP_BYTES = 64 << 10
# Plans cached per process, counted as FilePlan.weight: ~950 bytes per tensor (its segment, plan and
# frame), so a 100,000-tensor file ~95 MB, a checkpoint of a few hundred tensors ~300 KB.
PLAN_CACHE_ENTRIES = 4096
PLAN_CACHE_BYTES = 128 << 20


class FrameCache:
    """Decoded frames by (tensor id, raw offset, raw length), least recently used evicted first.

    A tensor's bytes never change (its id is their hash), so an entry stays valid across rebases.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple[str, int, int], value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)


class Reader:
    def __init__(
        self, store: ObjectStore, sessions: sessionmaker[Session], *, cache_bytes: int = 256 << 20,
        threads: int = 2, plan_entries: int = PLAN_CACHE_ENTRIES, plan_bytes: int = PLAN_CACHE_BYTES,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.cache = FrameCache(cache_bytes)
        self.plans = PlanCache(plan_entries, plan_bytes)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deltahub-read")
        # One thread: plans built for range reads queue behind each other, never beside the decodes.
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deltahub-plan")
        self._planning: set[Hashable] = set()
        self._planning_lock = threading.Lock()

    def plan(self, sha256: str) -> plans.FilePlan:
        """The whole file's plan: from the cache when its key is current, else built and cached."""
        with session_scope(self.sessions) as s:
            head = plans.file_head(s, sha256)
            if head is None:
                raise FileNotStored(sha256=sha256)
            return self._whole_plan(s, head)

    def read_file(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of a stored file, every frame checked on decode."""
        with session_scope(self.sessions) as s:
            head = plans.file_head(s, sha256)
        if head is None:
            raise FileNotStored(sha256=sha256)
        return self.read_head(head, start, end)

    def read_head(self, head: plans.FileHead, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of the file `head` names (read in the caller's catalog session): with its
        plan cached, no catalog query at all. Without one, a whole read builds and caches the plan; a
        range read loads only its own segments and has the whole plan built in the background, so the
        ranges after it come from the cache (building a 100,000-tensor plan takes seconds: the first
        range must not wait for it)."""
        end = head.size if end is None else min(end, head.size)
        start = min(max(start, 0), end)
        plan = self.plans.get(head.plan_key)
        if plan is None:
            with session_scope(self.sessions) as s:
                if start == 0 and end == head.size:
                    plan = self._whole_plan(s, head)
                else:
                    plan = plans.range_plan(s, head, start, end)
                    self._plan_later(head)
        return self._ordered(self._groups(plan, start, end))

    def _plan_later(self, head: plans.FileHead) -> None:
        """Build and cache the whole plan of `head` on the planner thread, once at a time per file."""
        with self._planning_lock:
            if head.plan_key in self._planning:
                return
            self._planning.add(head.plan_key)

        def build() -> None:
            try:
                with session_scope(self.sessions) as s:
                    self._whole_plan(s, head)
            except Exception:  # a range read that needs it will build it again, or fail itself
                log.warning("building the read plan of %s failed", head.sha256, exc_info=True)
            finally:
                with self._planning_lock:
                    self._planning.discard(head.plan_key)

        self._planner.submit(build)

    def wait_for_plans(self) -> None:
        """Block until the plans queued by range reads so far are built (tests, benchmarks)."""
        self._planner.submit(lambda: None).result()

    def _whole_plan(self, s: Session, head: plans.FileHead) -> plans.FilePlan:
        cached = self.plans.get(head.plan_key)
        if cached is not None:
            return cached
        plan = plans.file_plan(s, head.sha256)
        if plan is None:
            raise FileNotStored(sha256=head.sha256)
        # Cached only if no re-encode committed while it was loaded (it could mix old and new rows).
        if plans.file_head(s, head.sha256) == head and head.stored_at is not None:
            self.plans.put(head.plan_key, plan)
        return plan

    def read_tensor(self, tensors: dict[str, plans.TensorPlan], tensor_id: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of one tensor, decoded in this thread (used for bases and by ingest)."""
        tensor = tensors[tensor_id]
        out = []
        for i in plans.frames_covering(tensor, start, end):
            frame = tensor.frames[i]
            raw = self._frame(tensors, tensor, frame)
            lo, hi = max(start, frame.raw_offset), min(end, frame.raw_end)
            out.append(raw[lo - frame.raw_offset : hi - frame.raw_offset])
        return b"".join(out)

    def base_range_reader(
        self, tensors: dict[str, plans.TensorPlan], base_id: str, target: DType, layout: Transposed | None = None
    ) -> Callable[[int, int], bytes]:
        """For target range [a, b), the base's own bytes for those elements: [a·r, b·r) in the base's
        dtype (r = 2 for an F32 base of a BF16 tensor). The cast itself is the encoder's and decoder's
        stage, recorded in every frame, not the reader's. With a layout, the elements are gathered
        through it from the whole base, read once on first use and held by the returned reader: one base
        tensor in memory per tensor being encoded."""
        base = tensors[base_id]
        size = DTYPES[base.dtype].itemsize
        r = casts.ratio(DTYPES[base.dtype], target)
        whole: list[bytes] = []

        def read(a: int, b: int) -> bytes:
            if layout is None:
                return self.read_tensor(tensors, base_id, a * r, b * r)
            if not whole:
                whole.append(self.read_tensor(tensors, base_id, 0, base.nbytes))
            return layouts.gather(whole[0], layout, size, a * r // size, b * r // size)

        return read

    def _groups(self, plan: plans.FilePlan, start: int, end: int) -> Iterator[Callable[[], bytes]]:
        """The pieces of [start, end), consecutive small ones joined into one of up to GROUP_BYTES."""
        group: list[Callable[[], bytes]] = []
        size, limit = 0, FIRST_GROUP_BYTES
        for piece, length in self._pieces(plan, start, end):
            if group and size + length > limit:
                yield _joined(group)
                group, size, limit = [], 0, GROUP_BYTES
            group.append(piece)
            size += length
        if group:
            yield _joined(group)

    def _pieces(self, plan: plans.FilePlan, start: int, end: int) -> Iterator[tuple[Callable[[], bytes], int]]:
        """One callable per frame slice covering [start, end), in file order. The slices must tile the
        range exactly: a segment or frame missing from the catalog is damage, never a short body."""
        at = start
        for seg in plan.segments_in(start, end):
            lo, hi = max(start, seg.offset) - seg.offset, min(end, seg.end) - seg.offset
            tensor = plan.tensors[seg.tensor_id]
            for i in plans.frames_covering(tensor, lo, hi):
                frame = tensor.frames[i]
                a, b = max(lo, frame.raw_offset) - frame.raw_offset, min(hi, frame.raw_end) - frame.raw_offset
                if seg.offset + frame.raw_offset + a != at:
                    raise _gap(plan, at)
                at += b - a
                yield _slice_of(self._frame, plan.tensors, tensor, frame, a, b), b - a
        if at != end:
            raise _gap(plan, at)

    def _ordered(self, pieces: Iterator[Callable[[], bytes]]) -> Iterator[bytes]:
        """Run pieces on the pool, at most READ_AHEAD ahead of the consumer, yielding in order (and as
        soon as the oldest is done: the first byte does not wait for the read-ahead to fill)."""
        pending: list[Future[bytes]] = []
        try:
            for piece in pieces:
                pending.append(self._pool.submit(piece))
                while pending and (len(pending) > READ_AHEAD or pending[0].done()):
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()

    def _frame(self, tensors: dict[str, plans.TensorPlan], tensor: plans.TensorPlan, frame: plans.FramePlan) -> bytes:
        key = (tensor.id, frame.raw_offset, frame.raw_length)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        blob = self.store.get(frame.object_key, frame.object_offset, frame.object_offset + frame.object_length)
        if len(blob) != frame.object_length:
            raise IntegrityError(
                detail=f"object {frame.object_key} is short: frame {frame.seq} of tensor {tensor.id} "
                f"needs {frame.object_length} bytes at {frame.object_offset}, got {len(blob)}"
            )
        header = read_frame_header(blob)
        if header.raw_size != frame.raw_length:
            # Checked before decoding: a damaged or crafted frame must not make us allocate its claim.
            raise IntegrityError(
                detail=f"frame {frame.seq} of tensor {tensor.id} claims {header.raw_size} bytes, "
                f"the catalog {frame.raw_length}"
            )
        base, base_dtype = None, None
        # Frames say their codec: a window coded plain inside a delta tensor needs no base read.
        if get_codec(header.codec_id, header.config).needs_base:
            if tensor.base_id is None:
                raise IntegrityError(detail=f"frame {frame.seq} of tensor {tensor.id} is a delta of no base")
            # The frame says which dtype its base is read in (v2; for v1 the catalog's, as v1 did).
            base_dtype = tensors[tensor.base_id].dtype
            r = base_ratio(header, base_dtype)
            if header.layout is not None:
                base = self._gathered_base(tensors, tensor, frame, header)
            else:
                base = self.read_tensor(tensors, tensor.base_id, frame.raw_offset * r, frame.raw_end * r)
            if len(base) != frame.raw_length * r:
                # A tensor that grew is delta-coded only on the rows its base holds: a delta frame past
                # the base's end is damage, never a short base to decode against.
                raise IntegrityError(
                    detail=f"frame {frame.seq} of tensor {tensor.id} needs base bytes "
                    f"[{frame.raw_offset * r}, {frame.raw_end * r}) of a {tensors[tensor.base_id].nbytes}-byte base"
                )
        # Without `out`, decode_frame returns a new bytes object.
        raw = cast(bytes, decode_frame(blob, base, base_dtype=base_dtype))
        if len(raw) != frame.raw_length or checksum(raw) != frame.checksum:
            raise IntegrityError(detail=f"frame {frame.seq} of tensor {tensor.id} does not match its checksum")
        self.cache.put(key, raw)
        return raw


    def _gathered_base(
        self, tensors: dict[str, plans.TensorPlan], tensor: plans.TensorPlan, frame: plans.FramePlan,
        header: FrameHeader,
    ) -> bytes:
        """The base elements of a frame that reads its base through a layout (version 3): gathered from
        the whole base tensor, which is read (through the frame cache) for this frame and dropped after
        it, so a decoding thread holds one base tensor at a time."""
        layout, base = header.layout, tensors[cast(str, tensor.base_id)]
        if layout is None or base.shape != layout.base_shape:
            raise IntegrityError(
                detail=f"frame {frame.seq} of tensor {tensor.id} reads a {layout and list(layout.base_shape)} "
                f"base, its base {base.id} is {list(base.shape)}"
            )
        whole = self.read_tensor(tensors, base.id, 0, base.nbytes)
        return bytes(base_window(header, whole, (frame.raw_offset, frame.raw_end), base.dtype))


def _slice_of(
    decode: Callable[[dict[str, plans.TensorPlan], plans.TensorPlan, plans.FramePlan], bytes],
    tensors: dict[str, plans.TensorPlan],
    tensor: plans.TensorPlan,
    frame: plans.FramePlan,
    a: int,
    b: int,
) -> Callable[[], bytes]:
    def piece() -> bytes:
        raw = decode(tensors, tensor, frame)
        return raw if (a, b) == (0, len(raw)) else raw[a:b]

    return piece


def _joined(pieces: list[Callable[[], bytes]]) -> Callable[[], bytes]:
    if len(pieces) == 1:
        return pieces[0]
    return lambda: b"".join(piece() for piece in pieces)


def _gap(plan: plans.FilePlan, at: int) -> IntegrityError:
    return IntegrityError(detail=f"the catalog holds no frame for byte {at} of file {plan.sha256}")
