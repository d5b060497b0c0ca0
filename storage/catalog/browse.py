"""Read-only queries for the web pages and the metrics: repositories with their sizes, how each file is
stored, a file's tensors, family lineage, the ingest queue, and the hub's totals.

Each function is a fixed number of aggregate queries, whatever the catalog holds: the pages list a few
hundred rows and the metrics endpoint calls `totals` on a timer, so nothing here walks rows in Python
that SQL can sum.

Per-file "stored bytes" are the encoded bytes of the file's distinct tensors (a delta-coded tensor counts
its delta, a tensor shared with another file counts in full): what the file costs alone. The hub-wide
accounting, where shared bytes count once, is storage/catalog/accounting.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from storage.catalog.counters import read as read_counters
from storage.catalog.models import (
    Commit,
    Family,
    FileObject,
    FileSegment,
    FileState,
    Frame,
    IngestJob,
    Ref,
    Repository,
    StoreObject,
    Tensor,
    TreeEntry,
)
from storage.core.formats.registry import parses_tensors
from storage.core.segments import HEADER_SEGMENT

HEADER = HEADER_SEGMENT


@dataclass(frozen=True, slots=True)
class RepoSummary:
    id: int
    namespace: str
    name: str
    private: bool
    created_at: datetime
    updated_at: datetime
    files: int
    logical_bytes: int
    stored_bytes: int

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Location:
    """Where a file is named: a repository (with its visibility, for the caller's filter) and a path."""

    namespace: str
    name: str
    private: bool
    path: str

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class FileStorage:
    sha256: str
    size: int
    kind: str
    state: str
    error: str | None
    family_id: int | None
    base_sha256: str | None
    tensors: int
    delta_tensors: int
    stored_bytes: int
    # Other repositories naming the same file: its bytes are held once (file dedup).
    shared_by: int
    # Segments of a format without tensors (a chunked blob's content-defined chunks; 1 for a small blob),
    # and how many of them another file holds too (stored once: chunk dedup). 0 for a tensor format.
    chunks: int = 0
    shared_chunks: int = 0
    # Bytes of a tensor file that are no tensor (headers, pickles, zip records, padding, typed ONNX
    # initializers): shown as one "other bytes" figure, not as rows.
    other_bytes: int = 0


@dataclass(frozen=True, slots=True)
class EntryStorage:
    path: str
    file: FileStorage


@dataclass(frozen=True, slots=True)
class TensorRow:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    stored_bytes: int
    codec: str
    base_tensor_id: str | None
    chain_depth: int
    # Files holding this tensor: more than one means it is stored once for all (tensor dedup).
    files: int
    # Whether the segment is a named tensor (a GGUF quantized tensor is one, stored as its bytes), not an
    # opaque span or the header.
    is_tensor: bool = True


@dataclass(frozen=True, slots=True)
class FamilySummary:
    id: int
    name: str | None
    fingerprint: str
    root_sha256: str | None
    members: int
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class FamilyMember:
    sha256: str
    size: int
    base_sha256: str | None
    stored_bytes: int
    # Bytes this file does not store because of its base: its size less what it holds beyond the base's
    # tensors (shared tensors and deltas both count). 0 for the root.
    saved_vs_base: int
    locations: tuple[Location, ...]


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    file_sha256: str
    size: int
    repo: Location | None
    state: str
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Totals:
    logical_bytes: int
    physical_bytes: int
    staged_bytes: int
    repositories: int
    files: int
    families: int
    jobs: dict[str, int]
    # Store objects no frame references: what the next GC frees once its grace period has passed.
    unreferenced_bytes: int = 0
    # Work done by every process, from storage/catalog/counters.py: name -> label -> value.
    counters: dict[str, dict[str, float]] = field(default_factory=dict)


def _encoded_per_tensor() -> Select[str, int]:
    return select(Frame.tensor_id, func.sum(Frame.object_length).label("encoded")).group_by(Frame.tensor_id)


def _file_tensors(shas: Sequence[str]) -> Select[str, str]:
    return (
        select(FileSegment.file_sha256, FileSegment.tensor_id)
        .where(FileSegment.file_sha256.in_(shas))
        .distinct()
    )


def _is_tensor_segment() -> ColumnElement[bool]:
    """A named segment other than the header: a tensor, whatever the format (GGUF keeps a quantized
    tensor as its bytes under its name; opaque spans have no name)."""
    return and_(FileSegment.name.is_not(None), FileSegment.name != HEADER_SEGMENT)


def file_storage(session: Session, shas: Iterable[str]) -> dict[str, FileStorage]:
    """How each file is stored, in five queries whatever their number."""
    wanted = sorted(set(shas))
    if not wanted:
        return {}
    files = {f.sha256: f for f in session.scalars(select(FileObject).where(FileObject.sha256.in_(wanted)))}
    pairs = _file_tensors(wanted).subquery()
    enc = _encoded_per_tensor().subquery()
    per_file = session.execute(
        select(
            pairs.c.file_sha256,
            func.sum(func.coalesce(enc.c.encoded, 0)),
            func.sum(case((Tensor.base_tensor_id.is_not(None), 1), else_=0)),
        )
        .select_from(pairs)
        .join(Tensor, Tensor.id == pairs.c.tensor_id)
        .outerjoin(enc, enc.c.tensor_id == pairs.c.tensor_id)
        .group_by(pairs.c.file_sha256)
    ).all()
    counts = {sha: (int(stored or 0), int(deltas or 0)) for sha, stored, deltas in per_file}
    other = aliased(FileSegment)
    held_elsewhere = exists().where(other.tensor_id == FileSegment.tensor_id,
                                    other.file_sha256 != FileSegment.file_sha256)
    per_segment = session.execute(
        select(
            FileSegment.file_sha256,
            func.count(),
            func.sum(case((_is_tensor_segment(), 1), else_=0)),
            func.sum(case((or_(FileSegment.name.is_(None), FileSegment.name == HEADER_SEGMENT),
                           FileSegment.length), else_=0)),
            func.sum(case((held_elsewhere, 1), else_=0)),
        )
        .where(FileSegment.file_sha256.in_(wanted))
        .group_by(FileSegment.file_sha256)
    ).all()
    segments = {sha: (int(n), int(named or 0), int(rest or 0), int(shared or 0))
                for sha, n, named, rest, shared in per_segment}
    named = session.execute(
        select(TreeEntry.file_sha256, func.count(func.distinct(TreeEntry.repo_id)))
        .where(TreeEntry.file_sha256.in_(wanted))
        .group_by(TreeEntry.file_sha256)
    ).all()
    repos_naming = {sha: int(n) for sha, n in named}
    out: dict[str, FileStorage] = {}
    for sha, f in files.items():
        stored, deltas = counts.get(sha, (0, 0))
        n, tensors, other_bytes, shared = segments.get(sha, (0, 0, 0, 0))
        if f.state != FileState.STORED:
            stored = f.size  # served from staging, as uploaded
        # The format registry says whether the kind lists tensors: a tensor file counts its named
        # segments, any other file its chunks.
        tensor_format = parses_tensors(f.kind)
        out[sha] = FileStorage(
            sha, f.size, f.kind, f.state, f.error, f.family_id, f.base_sha256,
            tensors if tensor_format else 0, deltas, stored,
            max(repos_naming.get(sha, 1) - 1, 0),
            0 if tensor_format else n, 0 if tensor_format else shared,
            other_bytes if tensor_format else 0,
        )
    return out


def _heads() -> Select[tuple[int, str]]:
    """Each repository's displayed revision: main when it has one, else its first branch by name."""
    first = func.min(Ref.name).label("name")
    fallback = select(Ref.repo_id, first).group_by(Ref.repo_id).subquery()
    main = select(Ref.repo_id, Ref.commit_oid).where(Ref.name == "main")
    other = (
        select(Ref.repo_id, Ref.commit_oid)
        .join(fallback, and_(fallback.c.repo_id == Ref.repo_id, fallback.c.name == Ref.name))
        .where(Ref.repo_id.not_in(select(Ref.repo_id).where(Ref.name == "main")))
    )
    return main.union_all(other)  # type: ignore[return-value]


def repo_summaries(session: Session) -> list[RepoSummary]:
    """Every repository, with the size of its displayed revision (visibility is the caller's to filter)."""
    heads = _heads().subquery()
    updated = dict(session.execute(select(Commit.repo_id, func.max(Commit.created_at)).group_by(Commit.repo_id)).all())
    entries = session.execute(
        select(TreeEntry.repo_id, TreeEntry.file_sha256)
        .join(heads, and_(heads.c.repo_id == TreeEntry.repo_id, heads.c.commit_oid == TreeEntry.commit_oid))
    ).all()
    by_repo: dict[int, set[str]] = defaultdict(set)
    for rid, sha in entries:
        by_repo[int(rid)].add(sha)
    storage = file_storage(session, {sha for _, sha in entries})
    out = []
    for repo in session.scalars(select(Repository).order_by(Repository.namespace, Repository.name)):
        shas = by_repo.get(repo.id, set())
        held = [storage[s] for s in shas if s in storage]
        out.append(RepoSummary(
            repo.id, repo.namespace, repo.name, repo.private, repo.created_at,
            updated.get(repo.id) or repo.created_at, len(shas),
            sum(f.size for f in held), sum(f.stored_bytes for f in held),
        ))
    return out


def tree_storage(session: Session, repo_pk: int, commit_oid: str) -> list[EntryStorage]:
    """The files of a commit of the repository (none for another repository's commit)."""
    rows = session.execute(
        select(TreeEntry.path, TreeEntry.file_sha256)
        .where(TreeEntry.repo_id == repo_pk, TreeEntry.commit_oid == commit_oid)
        .order_by(TreeEntry.path)
    ).all()
    storage = file_storage(session, {sha for _, sha in rows})
    return [EntryStorage(path, storage[sha]) for path, sha in rows if sha in storage]


def locations(session: Session, shas: Iterable[str]) -> dict[str, list[Location]]:
    """Where each file is named at any branch head (so a link opens a revision people can browse)."""
    wanted = sorted(set(shas))
    out: dict[str, list[Location]] = defaultdict(list)
    if not wanted:
        return out
    rows = session.execute(
        select(TreeEntry.file_sha256, Repository.namespace, Repository.name, Repository.private, TreeEntry.path)
        .join(Ref, (Ref.repo_id == TreeEntry.repo_id) & (Ref.commit_oid == TreeEntry.commit_oid))
        .join(Repository, Repository.id == Ref.repo_id)
        .where(TreeEntry.file_sha256.in_(wanted))
        .distinct()
        .order_by(Repository.namespace, Repository.name, TreeEntry.path)
    ).all()
    for sha, namespace, name, private, path in rows:
        out[sha].append(Location(namespace, name, bool(private), path))
    return out


def file_tensors(session: Session, sha256: str) -> list[TensorRow]:
    enc = _encoded_per_tensor().subquery()
    holders = (
        select(FileSegment.tensor_id, func.count(func.distinct(FileSegment.file_sha256)).label("files"))
        .where(FileSegment.tensor_id.in_(select(FileSegment.tensor_id).where(FileSegment.file_sha256 == sha256)))
        .group_by(FileSegment.tensor_id)
        .subquery()
    )
    rows = session.execute(
        select(FileSegment.name, Tensor, func.coalesce(enc.c.encoded, 0), holders.c.files, _is_tensor_segment())
        .join(Tensor, Tensor.id == FileSegment.tensor_id)
        .outerjoin(enc, enc.c.tensor_id == Tensor.id)
        .join(holders, holders.c.tensor_id == Tensor.id)
        .where(FileSegment.file_sha256 == sha256)
        .order_by(FileSegment.seq)
    ).all()
    return [
        # Each frame names its own codec in its header (the catalog keeps no summary): here the coding
        # family, from the catalog alone.
        TensorRow(name or "(bytes)", t.dtype, tuple(t.shape), t.nbytes, int(stored),
                  "delta" if t.base_tensor_id else "plain", t.base_tensor_id, t.chain_depth, int(files),
                  bool(is_tensor))
        for name, t, stored, files, is_tensor in rows
    ]


def _family_members() -> Select[tuple[int, str]]:
    """(family id, file sha256) for every family: each chain of recorded delta edges (files.base_sha256)
    is drawn in the family of its root, the first file of the chain that a fingerprint placed in one.

    A fingerprint is one file kind's exact tensor names and shapes, so a GGUF or torch checkpoint coded
    against a safetensors base, or a task head whose tensors carry a `bert.` prefix, may have another
    fingerprint (its own family) or none, while ingest did record which base it is coded against: the
    edges decide where a file shows, so it shows once, under its base. One recursive query for every
    family (UNION also stops it at a cycle, which ingest never records)."""
    base = aliased(FileObject)
    seed = (
        select(FileObject.family_id.label("family_id"), FileObject.sha256.label("sha256"))
        .outerjoin(base, base.sha256 == FileObject.base_sha256)
        .where(FileObject.family_id.is_not(None), base.family_id.is_(None))
        .cte("family_closure", recursive=True)
    )
    child = aliased(FileObject)
    closure = seed.union(
        select(seed.c.family_id, child.sha256).join(child, child.base_sha256 == seed.c.sha256)
    )
    return select(closure.c.family_id, closure.c.sha256)


def families(session: Session) -> list[FamilySummary]:
    closure = _family_members().subquery()
    members = (
        select(closure.c.family_id, func.count().label("n"), func.sum(FileObject.size).label("size"))
        .join(FileObject, FileObject.sha256 == closure.c.sha256)
        .group_by(closure.c.family_id)
        .subquery()
    )
    rows = session.execute(
        select(Family, members.c.n, members.c.size).join(members, members.c.family_id == Family.id).order_by(Family.id)
    ).all()
    shas_by_family: dict[int, list[str]] = defaultdict(list)
    for fid, sha in session.execute(select(closure.c.family_id, closure.c.sha256)):
        shas_by_family[int(fid)].append(sha)
    storage = file_storage(session, [s for shas in shas_by_family.values() for s in shas])
    return [
        FamilySummary(fam.id, fam.name, fam.fingerprint, fam.root_sha256, int(n), int(size or 0),
                      sum(storage[s].stored_bytes for s in shas_by_family[fam.id] if s in storage))
        for fam, n, size in rows
    ]


def family(session: Session, family_id: int) -> tuple[FamilySummary, list[FamilyMember]] | None:
    summary = next((f for f in families(session) if f.id == family_id), None)
    if summary is None:
        return None
    closure = _family_members().subquery()
    files = list(session.scalars(
        select(FileObject).join(closure, closure.c.sha256 == FileObject.sha256)
        .where(closure.c.family_id == family_id)
    ))
    shas = [f.sha256 for f in files]
    storage = file_storage(session, shas)
    tensors_of: dict[str, set[str]] = defaultdict(set)
    for sha, tid in session.execute(_file_tensors(shas)):
        tensors_of[sha].add(tid)
    bases = {f.base_sha256 for f in files if f.base_sha256}
    for sha, tid in session.execute(_file_tensors(sorted(bases - set(shas)))):
        tensors_of[sha].add(tid)
    held = select(FileSegment.tensor_id).where(FileSegment.file_sha256.in_(shas))
    enc = {tid: int(n) for tid, n in session.execute(_encoded_per_tensor().where(Frame.tensor_id.in_(held)))}
    where = locations(session, shas)
    members = []
    for f in files:
        saved = 0
        if f.base_sha256:
            own = tensors_of[f.sha256] - tensors_of[f.base_sha256]
            saved = max(f.size - sum(int(enc.get(t, 0)) for t in own), 0)
        stored = storage[f.sha256].stored_bytes if f.sha256 in storage else f.size
        members.append(FamilyMember(f.sha256, f.size, f.base_sha256, stored, saved, tuple(where.get(f.sha256, []))))
    return summary, members


def ingest_jobs(session: Session, states: Sequence[str], limit: int = 200) -> list[JobRow]:
    rows = session.execute(
        select(IngestJob, FileObject.size, Repository)
        .join(FileObject, FileObject.sha256 == IngestJob.file_sha256)
        .outerjoin(Repository, Repository.id == IngestJob.repo_id)
        .where(IngestJob.state.in_(states))
        .order_by(IngestJob.updated_at.desc(), IngestJob.id.desc())
        .limit(limit)
    ).all()
    return [
        JobRow(job.id, job.file_sha256, int(size),
               Location(repo.namespace, repo.name, repo.private, job.path or "") if repo is not None else None,
               job.state, job.attempts, job.error, job.created_at, job.updated_at)
        for job, size, repo in rows
    ]


def totals(session: Session) -> Totals:
    """The hub's size in a handful of aggregate queries: what /metrics reports on every (cached) scrape."""
    named = select(TreeEntry.repo_id, TreeEntry.file_sha256).distinct()
    pairs = named.subquery()
    logical = session.scalar(
        select(func.coalesce(func.sum(FileObject.size), 0)).join(pairs, pairs.c.file_sha256 == FileObject.sha256)
    )
    objects = session.scalar(select(func.coalesce(func.sum(StoreObject.size), 0)))
    staged = session.scalar(
        select(func.coalesce(func.sum(FileObject.size), 0)).where(
            FileObject.state != FileState.STORED, FileObject.staging_key.is_not(None)
        )
    )
    unreferenced = session.scalar(
        select(func.coalesce(func.sum(StoreObject.size), 0)).where(
            StoreObject.kind != "staging", StoreObject.key.not_in(select(Frame.object_key).distinct())
        )
    )
    jobs = {str(state): int(n) for state, n in session.execute(
        select(IngestJob.state, func.count()).group_by(IngestJob.state))}
    return Totals(
        int(logical or 0), int(objects or 0) + int(staged or 0), int(staged or 0),
        int(session.scalar(select(func.count()).select_from(Repository)) or 0),
        int(session.scalar(select(func.count()).select_from(FileObject)) or 0),
        int(session.scalar(select(func.count()).select_from(Family)) or 0),
        jobs,
        int(unreferenced or 0),
        read_counters(session),
    )


def recent_ingest(session: Session, limit: int = 100) -> list[tuple[int, float]]:
    """(file bytes, seconds from queued to done) of the most recently finished ingest jobs."""
    rows = session.execute(
        select(FileObject.size, IngestJob.created_at, IngestJob.updated_at)
        .join(FileObject, FileObject.sha256 == IngestJob.file_sha256)
        .where(IngestJob.state == "done")
        .order_by(IngestJob.updated_at.desc())
        .limit(limit)
    ).all()
    return [(int(size), max((done - queued).total_seconds(), 0.0)) for size, queued, done in rows]
