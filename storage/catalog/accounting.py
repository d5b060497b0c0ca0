"""Storage accounting: where the bytes went, and where the savings came from.

Logical bytes are what users uploaded: per repository, every distinct file any of its commits names.
Physical bytes are what the store holds: packs, frame objects, and staged files not yet ingested.
The saving (logical − physical) splits by source:
- file dedup: the same file named by several repositories (or again after re-upload);
- tensor dedup: tensors shared between different files;
- delta coding: tensors stored as a delta against a base, raw bytes − encoded bytes;
- plain coding: tensors stored alone, raw bytes − encoded bytes;
less overhead (pack headers, objects left for GC).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.catalog.models import (
    Commit,
    Family,
    FileObject,
    FileSegment,
    FileState,
    Frame,
    Repository,
    StoreObject,
    Tensor,
    TreeEntry,
)


def _repo_files(session: Session) -> dict[int, set[str]]:
    rows = session.execute(
        select(Commit.repo_id, TreeEntry.file_sha256).join(Commit, Commit.oid == TreeEntry.commit_oid).distinct()
    )
    out: dict[int, set[str]] = defaultdict(set)
    for repo_id, sha in rows:
        out[repo_id].add(sha)
    return out


def _closure(start: set[str], bases: dict[str, str | None]) -> set[str]:
    """Tensors plus every base their delta chains need."""
    out = set(start)
    for tensor_id in start:
        base = bases.get(tensor_id)
        while base is not None and base not in out:
            out.add(base)
            base = bases.get(base)
    return out


def storage_report(session: Session, *, top: int = 20) -> dict[str, Any]:
    files = {f.sha256: f for f in session.scalars(select(FileObject))}
    repo_files = _repo_files(session)
    repos = {r.id: r for r in session.scalars(select(Repository))}
    seg_rows = session.execute(select(FileSegment.file_sha256, FileSegment.tensor_id)).all()
    file_tensors: dict[str, set[str]] = defaultdict(set)
    for sha, tensor_id in seg_rows:
        file_tensors[sha].add(tensor_id)
    tensors = {t.id: (t.nbytes, t.base_tensor_id) for t in session.scalars(select(Tensor))}
    bases = {tid: base for tid, (_, base) in tensors.items()}
    per_tensor = select(Frame.tensor_id, func.sum(Frame.object_length)).group_by(Frame.tensor_id)
    encoded = dict(session.execute(per_tensor).all())
    objects_bytes = session.scalar(select(func.coalesce(func.sum(StoreObject.size), 0))) or 0
    referenced_objects = session.scalar(
        select(func.coalesce(func.sum(StoreObject.size), 0)).where(
            StoreObject.key.in_(select(Frame.object_key).distinct())
        )
    ) or 0

    logical = sum(files[sha].size for shas in repo_files.values() for sha in shas if sha in files)
    named = set().union(*repo_files.values()) if repo_files else set()
    unique_files = sum(files[sha].size for sha in named if sha in files)
    stored_named = [sha for sha in named if sha in files and files[sha].state == FileState.STORED]
    staged_bytes = sum(f.size for f in files.values() if f.state != FileState.STORED and f.staging_key)
    live_tensors = set().union(*(file_tensors[sha] for sha in stored_named)) if stored_named else set()
    unique_tensor_bytes = sum(tensors[t][0] for t in live_tensors if t in tensors)
    delta_raw = delta_enc = plain_raw = plain_enc = 0
    for tid in live_tensors:
        nbytes, base = tensors.get(tid, (0, None))
        if base is None:
            plain_raw, plain_enc = plain_raw + nbytes, plain_enc + int(encoded.get(tid, 0))
        else:
            delta_raw, delta_enc = delta_raw + nbytes, delta_enc + int(encoded.get(tid, 0))
    physical = int(objects_bytes) + staged_bytes

    def encoded_of(ids: set[str]) -> int:
        return sum(int(encoded.get(t, 0)) for t in ids)

    repo_rows: list[dict[str, Any]] = []
    closures = {rid: _closure(set().union(*(file_tensors[s] for s in shas)) if shas else set(), bases)
                for rid, shas in repo_files.items()}
    # What deleting a repository frees: what no other repository needs (counted once, not pairwise).
    tensor_repos: Counter[str] = Counter(t for c in closures.values() for t in c)
    file_repos: Counter[str] = Counter(s for shas in repo_files.values() for s in shas)
    for rid, repo in repos.items():
        shas = repo_files.get(rid, set())
        mine = closures.get(rid, set())
        exclusive = encoded_of({t for t in mine if tensor_repos[t] == 1}) + sum(
            files[s].size for s in shas
            if file_repos[s] == 1 and s in files and files[s].state != FileState.STORED
        )
        repo_rows.append({
            "repo_id": f"{repo.namespace}/{repo.name}" if repo.namespace else repo.name,
            "files": len(shas),
            "logical_bytes": sum(files[s].size for s in shas if s in files),
            "physical_bytes": encoded_of(mine),
            "exclusive_bytes": exclusive,
        })
    repo_rows.sort(key=lambda r: -r["exclusive_bytes"])

    family_rows = []
    for fam in session.scalars(select(Family).order_by(Family.id)):
        members = [f for f in files.values() if f.family_id == fam.id]
        ids = set().union(*(file_tensors[f.sha256] for f in members)) if members else set()
        family_rows.append({
            "id": fam.id,
            "fingerprint": fam.fingerprint,
            "root": fam.root_sha256,
            "members": [{"sha256": f.sha256, "base": f.base_sha256, "size": f.size} for f in members],
            "logical_bytes": sum(f.size for f in members),
            "physical_bytes": encoded_of(_closure(ids, bases)),
        })
    return {
        "logical_bytes": logical,
        "physical_bytes": physical,
        "saved_bytes": logical - physical,
        "savings": {
            "file_dedup": logical - unique_files,
            "tensor_dedup": sum(files[s].size for s in stored_named) - unique_tensor_bytes,
            "delta_coding": delta_raw - delta_enc,
            "plain_coding": plain_raw - plain_enc,
            "overhead": -(int(objects_bytes) - delta_enc - plain_enc),
        },
        "breakdown": {
            "staged_bytes": staged_bytes,
            "store_object_bytes": int(objects_bytes),
            "unreferenced_object_bytes": int(objects_bytes) - int(referenced_objects),
            "delta_tensors_raw_bytes": delta_raw,
            "delta_tensors_encoded_bytes": delta_enc,
            "plain_tensors_raw_bytes": plain_raw,
            "plain_tensors_encoded_bytes": plain_enc,
        },
        "families": family_rows,
        "repositories": repo_rows[:top] if top else repo_rows,
    }
