"""What must hold after any crash, restart and retry (docs/reliability.md, "What is checked").

`check_committed` reads back every file any commit names and counts the bytes that do not come back;
`check_clean` is the state GC with grace 0 must leave: the store holds exactly what the catalog
references, nothing half-done remains, and no bytes are held twice. `footprint` summarises the stored
form, to compare a run that was cut short with one that was not.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from storage.app.hub import Hub
from storage.catalog.models import (
    FileObject,
    FileSegment,
    FileState,
    Frame,
    IngestJob,
    JobState,
    Repository,
    StoreObject,
    Tensor,
    TreeEntry,
)
from storage.core.errors import DeltahubError
from storage.objectstore import LocalObjectStore
from workers.jobs.verify import verify

PREFIXES = ("packs/", "frames/", "staging/")


@dataclass
class ReadBack:
    files: int = 0
    bytes_checked: int = 0
    bytes_lost: int = 0
    problems: list[str] = field(default_factory=list)


def committed(hub: Hub) -> dict[str, set[tuple[str, str]]]:
    """Every file any commit of any repository names: sha256 → {(repository, path)}."""
    with hub.session() as s:
        rows = s.execute(
            select(TreeEntry.file_sha256, Repository.namespace, Repository.name, TreeEntry.path)
            .join(Repository, Repository.id == TreeEntry.repo_id)
        ).all()
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for sha, namespace, name, path in rows:
        out[sha].add((f"{namespace}/{name}", path))
    return dict(out)


def check_committed(hub: Hub, known: dict[str, bytes]) -> ReadBack:
    """Read every committed file whole; any file that fails or differs counts all its bytes as lost."""
    result = ReadBack()
    for sha, where in sorted(committed(hub).items()):
        result.files += 1
        size = hub.file_info(sha).size
        result.bytes_checked += size
        try:
            data = b"".join(hub.read(sha))
        except DeltahubError as exc:
            result.bytes_lost += size
            result.problems.append(f"{sorted(where)}: {exc}")
            continue
        expected = known.get(sha)
        if hashlib.sha256(data).hexdigest() != sha or (expected is not None and data != expected):
            result.bytes_lost += size
            result.problems.append(f"{sorted(where)}: wrong bytes")
    return result


def store_keys(hub: Hub) -> dict[str, int]:
    return {info.key: info.size for prefix in PREFIXES for info in hub.store.list(prefix)}


def check_clean(hub: Hub) -> list[str]:
    """Problems with the state after recovery and GC with grace 0 (an empty list when it is clean)."""
    problems: list[str] = []
    with hub.session() as s:
        unfinished = s.scalar(
            select(func.count()).select_from(IngestJob).where(IngestJob.state != JobState.DONE)
        )
        files = {f.sha256: (f.state, f.staging_key, f.size) for f in s.scalars(select(FileObject))}
        in_trees = set(s.scalars(select(TreeEntry.file_sha256).distinct()))
        objects = {o.key: o.size for o in s.scalars(select(StoreObject))}
        frames = s.execute(
            select(Frame.tensor_id, Frame.seq, Frame.raw_offset, Frame.raw_length, Frame.object_key,
                   Frame.object_offset, Frame.object_length)
        ).all()
        tensors = {t.id: (t.nbytes, t.base_tensor_id) for t in s.scalars(select(Tensor))}
        segment_tensors = set(s.scalars(select(FileSegment.tensor_id).distinct()))
    if unfinished:
        problems.append(f"{unfinished} ingest jobs not done")
    for sha, (state, staging_key, _) in files.items():
        if sha not in in_trees:
            problems.append(f"file {sha} is named by no commit but survived GC")
        if state != FileState.STORED or staging_key is not None:
            problems.append(f"file {sha} is {state} (staging key {staging_key})")
    held = store_keys(hub)
    known = set(objects) | {key for _, key, _ in files.values() if key}
    if set(held) - known:
        problems.append(f"objects no catalog row knows: {sorted(set(held) - known)}")
    if known - set(held):
        problems.append(f"catalog rows whose object is missing: {sorted(known - set(held))}")
    problems += [f"object {k} holds {held[k]} bytes, catalog says {n}" for k, n in objects.items()
                 if k in held and held[k] != n]
    if isinstance(hub.store, LocalObjectStore):
        leftovers = sorted(p.name for p in (hub.store.root / "tmp").iterdir())
        if leftovers:
            problems.append(f"abandoned temporary files in the local store: {leftovers}")
    problems += _check_nothing_twice(frames, tensors, segment_tensors, objects)
    report = verify(hub)
    problems += [f"verify: {p.locations} {p.error}" for p in report.problems]
    return problems


def _check_nothing_twice(
    frames: list, tensors: dict[str, tuple[int, str | None]], segment_tensors: set[str], objects: dict[str, int]
) -> list[str]:
    """Every tensor needed, once; its frames tile it; no two frames share bytes; no object unused."""
    problems = []
    needed: set[str] = set()
    for tensor_id in segment_tensors:
        while tensor_id is not None and tensor_id not in needed:
            needed.add(tensor_id)
            tensor_id = tensors[tensor_id][1] if tensor_id in tensors else None
    if set(tensors) != needed:
        problems.append(f"tensors nothing needs: {sorted(set(tensors) - needed)[:5]}")
    by_tensor: dict[str, list] = defaultdict(list)
    by_object: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for f in frames:
        by_tensor[f.tensor_id].append(f)
        by_object[f.object_key].append((f.object_offset, f.object_offset + f.object_length))
    for tensor_id, (nbytes, _) in tensors.items():
        position = 0
        for f in sorted(by_tensor.get(tensor_id, []), key=lambda f: f.seq):
            if f.raw_offset != position:
                problems.append(f"tensor {tensor_id}: frame {f.seq} starts at {f.raw_offset}, not {position}")
            position = f.raw_offset + f.raw_length
        if position != nbytes:
            problems.append(f"tensor {tensor_id}: frames cover {position} of {nbytes} bytes")
    for key, spans in by_object.items():
        spans.sort()
        problems += [f"object {key}: frames overlap at {b[0]}" for a, b in itertools.pairwise(spans)
                     if b[0] < a[1]]
    problems += [f"object {key} holds no frame" for key in objects if key not in by_object]
    return problems


def footprint(hub: Hub) -> dict[str, int]:
    """The stored form in numbers: equal for two runs that stored the same files the same way."""
    with hub.session() as s:
        counts = {
            "files": s.scalar(select(func.count()).select_from(FileObject)),
            "tensors": s.scalar(select(func.count()).select_from(Tensor)),
            "delta_tensors": s.scalar(
                select(func.count()).select_from(Tensor).where(Tensor.base_tensor_id.is_not(None))
            ),
            "frame_bytes": s.scalar(select(func.coalesce(func.sum(Frame.object_length), 0))),
        }
    return {name: int(value or 0) for name, value in counts.items()}  # PostgreSQL sums are Decimal
