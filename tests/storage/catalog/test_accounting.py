"""Storage accounting in SQL gives the numbers a straightforward Python walk over every row gives.

`reference_report` is the plain computation (sets and loops over all rows, as the report was first
written); hypothesis builds random catalogs (shared files and tensors, delta chains, staged and failed
files, families, unreferenced objects) on SQLite and PostgreSQL and both reports must agree exactly.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.catalog.accounting import namespace_report, storage_report
from storage.catalog.models import (
    Account,
    AccountKind,
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

LINE = "deltahub <d@x> 0 +0000"  # git author and committer lines (commits.git_*)

def _closure(start: set[str], bases: dict[str, str | None]) -> set[str]:
    out = set(start)
    for tensor_id in start:
        base = bases.get(tensor_id)
        while base is not None and base not in out:
            out.add(base)
            base = bases.get(base)
    return out


def reference_report(session: Session) -> dict[str, Any]:
    """Every figure from the rows themselves, with Python sets: slow, and obviously right."""
    files = {f.sha256: f for f in session.scalars(select(FileObject))}
    repo_files: dict[int, set[str]] = defaultdict(set)
    for repo_id, sha in session.execute(
        select(Commit.repo_id, TreeEntry.file_sha256).join(Commit, Commit.oid == TreeEntry.commit_oid)
    ):
        repo_files[repo_id].add(sha)
    file_tensors: dict[str, set[str]] = defaultdict(set)
    for sha, tensor_id in session.execute(select(FileSegment.file_sha256, FileSegment.tensor_id)):
        file_tensors[sha].add(tensor_id)
    tensors = {t.id: (t.nbytes, t.base_tensor_id) for t in session.scalars(select(Tensor))}
    bases = {tid: base for tid, (_, base) in tensors.items()}
    encoded: Counter[str] = Counter()
    for frame in session.scalars(select(Frame)):
        encoded[frame.tensor_id] += frame.object_length
    objects = list(session.scalars(select(StoreObject)))
    frame_keys = set(session.scalars(select(Frame.object_key)))
    objects_bytes = sum(o.size for o in objects)
    referenced = sum(o.size for o in objects if o.key in frame_keys)

    named = set().union(*repo_files.values())
    logical = sum(files[s].size for shas in repo_files.values() for s in shas)
    stored_named = [s for s in named if files[s].state == FileState.STORED]
    staged = sum(f.size for f in files.values() if f.state != FileState.STORED and f.staging_key)
    live = set().union(*(file_tensors[s] for s in stored_named))
    sums = Counter()
    for tid in live:
        kind = "plain" if tensors[tid][1] is None else "delta"
        sums[f"{kind}_raw"] += tensors[tid][0]
        sums[f"{kind}_enc"] += encoded[tid]
    closures = {rid: _closure(set().union(*(file_tensors[s] for s in shas)), bases) for rid, shas in repo_files.items()}
    tensor_repos = Counter(t for c in closures.values() for t in c)
    file_repos = Counter(s for shas in repo_files.values() for s in shas)
    repos = []
    for repo in session.scalars(select(Repository).order_by(Repository.id)):
        shas, mine = repo_files.get(repo.id, set()), closures.get(repo.id, set())
        repos.append({
            "repo_id": f"{repo.namespace}/{repo.name}",
            "files": len(shas),
            "logical_bytes": sum(files[s].size for s in shas),
            "physical_bytes": sum(encoded[t] for t in mine),
            "exclusive_bytes": sum(encoded[t] for t in mine if tensor_repos[t] == 1)
            + sum(files[s].size for s in shas if file_repos[s] == 1 and files[s].state != FileState.STORED),
        })
    repos.sort(key=lambda r: -r["exclusive_bytes"])
    families = []
    for fam in session.scalars(select(Family).order_by(Family.id)):
        members = sorted((f for f in files.values() if f.family_id == fam.id), key=lambda f: (f.created_at, f.sha256))
        ids = set().union(*(file_tensors[f.sha256] for f in members))
        families.append({
            "id": fam.id, "fingerprint": fam.fingerprint, "root": fam.root_sha256,
            "members": [{"sha256": f.sha256, "base": f.base_sha256, "size": f.size} for f in members],
            "logical_bytes": sum(f.size for f in members),
            "physical_bytes": sum(encoded[t] for t in _closure(ids, bases)),
        })
    unique_tensor_bytes = sum(tensors[t][0] for t in live)
    stored_blobs = [s for s in stored_named if files[s].kind == "blob"]
    blob_chunks = set().union(*(file_tensors[s] for s in stored_blobs))
    chunk_dedup = sum(files[s].size for s in stored_blobs) - sum(tensors[t][0] for t in blob_chunks)
    return {
        "logical_bytes": logical,
        "physical_bytes": objects_bytes + staged,
        "saved_bytes": logical - objects_bytes - staged,
        "savings": {
            "file_dedup": logical - sum(files[s].size for s in named),
            "tensor_dedup": sum(files[s].size for s in stored_named) - unique_tensor_bytes - chunk_dedup,
            "chunk_dedup": chunk_dedup,
            "delta_coding": sums["delta_raw"] - sums["delta_enc"],
            "plain_coding": sums["plain_raw"] - sums["plain_enc"],
            "overhead": -(objects_bytes - sums["delta_enc"] - sums["plain_enc"]),
        },
        "breakdown": {
            "staged_bytes": staged,
            "store_object_bytes": objects_bytes,
            "unreferenced_object_bytes": objects_bytes - referenced,
            "delta_tensors_raw_bytes": sums["delta_raw"],
            "delta_tensors_encoded_bytes": sums["delta_enc"],
            "plain_tensors_raw_bytes": sums["plain_raw"],
            "plain_tensors_encoded_bytes": sums["plain_enc"],
        },
        "families": families,
        "repositories": repos,
    }


def reference_namespaces(session: Session) -> dict[str, Any]:
    """The per-namespace report from the rows, with sets: a unit (a tensor with its delta bases, or a
    staged file) is exclusive to a namespace when no other namespace's files need it."""
    files = {f.sha256: f for f in session.scalars(select(FileObject))}
    repos = {r.id: r.namespace for r in session.scalars(select(Repository))}
    repo_files: dict[int, set[str]] = defaultdict(set)
    for repo_id, sha in session.execute(
        select(Commit.repo_id, TreeEntry.file_sha256).join(Commit, Commit.oid == TreeEntry.commit_oid)
    ):
        repo_files[repo_id].add(sha)
    file_tensors: dict[str, set[str]] = defaultdict(set)
    for sha, tensor_id in session.execute(select(FileSegment.file_sha256, FileSegment.tensor_id)):
        file_tensors[sha].add(tensor_id)
    bases = {t.id: t.base_tensor_id for t in session.scalars(select(Tensor))}
    encoded: Counter[str] = Counter()
    for frame in session.scalars(select(Frame)):
        encoded[frame.tensor_id] += frame.object_length
    ns_files: dict[str, set[str]] = defaultdict(set)
    for repo_id, shas in repo_files.items():
        ns_files[repos[repo_id]] |= shas
    units: dict[str, dict[str, int]] = {}
    for ns, shas in ns_files.items():
        mine = {t: encoded[t] for t in _closure(set().union(*(file_tensors[s] for s in shas)), bases)}
        mine |= {s: files[s].size for s in shas if files[s].state != FileState.STORED and files[s].staging_key}
        units[ns] = mine
    needed_by = Counter(u for mine in units.values() for u in mine)
    accounts = {a.name: a for a in session.scalars(select(Account))}
    rows: list[dict[str, Any]] = []
    for ns in sorted(set(accounts) | set(repos.values())):
        mine = units.get(ns, {})
        alone = sum(size for u, size in mine.items() if needed_by[u] == 1)
        rows.append({
            "namespace": ns,
            "kind": accounts[ns].kind if ns in accounts else None,
            "repositories": sum(1 for n in repos.values() if n == ns),
            "logical_bytes": sum(files[s].size for rid, shas in repo_files.items() if repos[rid] == ns for s in shas),
            "physical_bytes": sum(mine.values()),
            "exclusive_bytes": alone,
            "shared_bytes": sum(mine.values()) - alone,
            "quota_bytes": accounts[ns].quota_bytes if ns in accounts else None,
        })
    every = {u: size for mine in units.values() for u, size in mine.items()}
    exclusive = sum(r["exclusive_bytes"] for r in rows)
    shared = sum(size for u, size in every.items() if needed_by[u] > 1)
    return {"namespaces": rows,
            "totals": {"exclusive_bytes": exclusive, "shared_bytes": shared, "attributed_bytes": exclusive + shared}}


def _sha(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


sizes = st.integers(0, 10_000)
NAMESPACES = ("ns", "org", "eve")


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, Any]:
    n_objects = draw(st.integers(0, 4))
    objects = [draw(sizes) for _ in range(n_objects)]
    n_tensors = draw(st.integers(0, 8))
    tensors = []
    for i in range(n_tensors):
        base = draw(st.none() | st.integers(0, i - 1)) if i else None
        frames = draw(st.lists(st.tuples(st.integers(0, n_objects - 1), sizes), max_size=2)) if n_objects else []
        tensors.append({"nbytes": draw(sizes), "base": base, "frames": frames})
    n_families = draw(st.integers(0, 3))
    n_files = draw(st.integers(0, 6))
    files = []
    for i in range(n_files):
        files.append({
            "size": draw(sizes),
            "kind": draw(st.sampled_from(["safetensors", "blob"])),
            "state": draw(st.sampled_from(list(FileState))),
            "staged": draw(st.booleans()),
            "family": draw(st.none() | st.integers(0, n_families - 1)) if n_families else None,
            "base": draw(st.none() | st.integers(0, i - 1)) if i else None,
            "tensors": draw(st.lists(st.integers(0, n_tensors - 1), max_size=4)) if n_tensors else [],
        })
    repos = [
        draw(st.lists(st.lists(st.integers(0, n_files - 1), max_size=4) if n_files else st.just([]), max_size=3))
        for _ in range(draw(st.integers(0, 4)))
    ]
    # Each repository in one of a few namespaces, some of them accounts (with or without a quota).
    namespaces = [draw(st.sampled_from(NAMESPACES)) for _ in repos]
    accounts = draw(st.dictionaries(st.sampled_from(NAMESPACES), st.none() | sizes, max_size=len(NAMESPACES)))
    return {"objects": objects, "tensors": tensors, "families": n_families, "files": files, "repos": repos,
            "namespaces": namespaces, "accounts": accounts}


def build(session: Session, spec: dict[str, Any]) -> None:
    keys = [f"packs/{i}" for i in range(len(spec["objects"]))]
    session.add_all(StoreObject(key=k, size=size, kind="pack") for k, size in zip(keys, spec["objects"], strict=True))
    ids = [_sha("tensor", i) for i in range(len(spec["tensors"]))]
    for i, t in enumerate(spec["tensors"]):
        base = ids[t["base"]] if t["base"] is not None else None
        session.add(Tensor(id=ids[i], dtype="BF16", shape=[1], nbytes=t["nbytes"], base_tensor_id=base))
        session.flush()
        for seq, (obj, length) in enumerate(t["frames"]):
            session.add(Frame(tensor_id=ids[i], seq=seq, raw_offset=0, raw_length=0, object_key=keys[obj],
                              object_offset=0, object_length=length, checksum=0))
    families = [Family(fingerprint=_sha("fp", i)) for i in range(spec["families"])]
    session.add_all(families)
    session.flush()
    shas = [_sha("file", i) for i in range(len(spec["files"]))]
    for i, f in enumerate(spec["files"]):
        session.add(FileObject(
            sha256=shas[i], size=f["size"], kind=f.get("kind", "safetensors"), state=f["state"],
            staging_key=f"staging/{i}" if f["staged"] else None,
            family_id=families[f["family"]].id if f["family"] is not None else None,
            base_sha256=shas[f["base"]] if f["base"] is not None else None,
        ))
        session.flush()
        for seq, t in enumerate(f["tensors"]):
            session.add(FileSegment(file_sha256=shas[i], seq=seq, offset=0, length=0, tensor_id=ids[t]))
    for name, quota in spec.get("accounts", {}).items():
        session.add(Account(name=name, kind=AccountKind.ORG if name == "org" else AccountKind.USER, quota_bytes=quota))
    for r, commits in enumerate(spec["repos"]):
        repo = Repository(namespace=spec.get("namespaces", ["ns"] * len(spec["repos"]))[r], name=f"r{r}")
        session.add(repo)
        session.flush()
        for c, tree in enumerate(commits):
            oid = _sha("commit", r, c)[:40]
            session.add(Commit(oid=oid, repo_id=repo.id, message="m", git_author=LINE, git_committer=LINE))
            session.flush()
            session.add_all(
                TreeEntry(repo_id=repo.id, commit_oid=oid, path=f"p{k}", file_sha256=shas[k], lfs=True,
                          git_oid="0" * 40)
                for k in sorted(set(tree))
            )
    session.flush()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=catalogs())
def test_sql_accounting_equals_the_python_walk(migrated_engine: Engine, spec: dict[str, Any]) -> None:
    with Session(migrated_engine) as session:
        try:
            build(session, spec)
            assert storage_report(session, top=0) == reference_report(session)
            by_namespace = namespace_report(session)
            assert by_namespace == reference_namespaces(session)
            # Exclusive and shared bytes add up to each namespace's physical bytes, and across namespaces
            # to every byte some namespace needs, each counted once.
            for row in by_namespace["namespaces"]:
                assert row["exclusive_bytes"] + row["shared_bytes"] == row["physical_bytes"]
            assert by_namespace["totals"]["attributed_bytes"] == _attributed(session)
        finally:
            session.rollback()


def _attributed(session: Session) -> int:
    """Every byte some repository's files need: the closure of their tensors, encoded, and the staged files
    among them (computed without namespaces at all)."""
    named = set(session.scalars(select(TreeEntry.file_sha256)))
    tensors = set(session.scalars(select(FileSegment.tensor_id).where(FileSegment.file_sha256.in_(named))))
    bases = {t.id: t.base_tensor_id for t in session.scalars(select(Tensor))}
    encoded: Counter[str] = Counter()
    for frame in session.scalars(select(Frame)):
        encoded[frame.tensor_id] += frame.object_length
    staged = session.scalars(select(FileObject).where(FileObject.sha256.in_(named)))
    return sum(encoded[t] for t in _closure(tensors, bases)) + sum(
        f.size for f in staged if f.state != FileState.STORED and f.staging_key
    )


def test_top_keeps_the_largest_exclusive_repositories(migrated_engine: Engine) -> None:
    spec = {"objects": [100], "tensors": [{"nbytes": 10, "base": None, "frames": [(0, 7)]},
                                          {"nbytes": 10, "base": 0, "frames": [(0, 3)]}],
            "families": 1,
            "files": [{"size": 5, "state": FileState.STORED, "staged": False, "family": 0, "base": None,
                       "tensors": [0]},
                      {"size": 9, "state": FileState.STORED, "staged": False, "family": 0, "base": 0,
                       "tensors": [1]}],
            "repos": [[[0]], [[1]], []]}
    with Session(migrated_engine) as session:
        build(session, spec)
        report = storage_report(session, top=2)
        # r1 needs tensor 1 and its base (tensor 0), which r0 also needs: only tensor 1 is its own, and
        # r0 owns nothing alone; the empty r2 is cut by top=2.
        assert [r["repo_id"] for r in report["repositories"]] == ["ns/r1", "ns/r0"]
        assert report["repositories"][0] == {"repo_id": "ns/r1", "files": 1, "logical_bytes": 9,
                                             "physical_bytes": 10, "exclusive_bytes": 3}
        assert report["families"][0]["physical_bytes"] == 10
        assert session.scalar(select(func.count()).select_from(Family)) == 1


def test_namespaces_split_physical_bytes_into_exclusive_and_shared(migrated_engine: Engine) -> None:
    """org/base holds a base; eve/tuned a fine-tune delta-coded against it (so eve needs the base's tensor
    too) and a staged file ns/r2 names as well; ns/r3 is empty, and the account "org" has a quota."""
    spec = {"objects": [100], "tensors": [{"nbytes": 10, "base": None, "frames": [(0, 7)]},
                                          {"nbytes": 10, "base": 0, "frames": [(0, 3)]}],
            "families": 0,
            "files": [{"size": 50, "state": FileState.STORED, "staged": False, "family": None, "base": None,
                       "tensors": [0]},
                      {"size": 60, "state": FileState.STORED, "staged": False, "family": None, "base": 0,
                       "tensors": [1]},
                      {"size": 11, "state": FileState.STAGED, "staged": True, "family": None, "base": None,
                       "tensors": []}],
            "repos": [[[0]], [[1, 2]], [[2]], []], "namespaces": ["org", "eve", "ns", "ns"],
            "accounts": {"org": 1000, "eve": None}}
    with Session(migrated_engine) as session:
        build(session, spec)
        report = namespace_report(session)
    rows = {row["namespace"]: row for row in report["namespaces"]}
    assert rows["org"] == {"namespace": "org", "kind": "org", "repositories": 1, "logical_bytes": 50,
                           "physical_bytes": 7, "exclusive_bytes": 0, "shared_bytes": 7, "quota_bytes": 1000}
    assert rows["eve"] == {"namespace": "eve", "kind": "user", "repositories": 1, "logical_bytes": 71,
                           "physical_bytes": 21, "exclusive_bytes": 3, "shared_bytes": 18, "quota_bytes": None}
    assert rows["ns"] == {"namespace": "ns", "kind": None, "repositories": 2, "logical_bytes": 11,
                          "physical_bytes": 11, "exclusive_bytes": 0, "shared_bytes": 11, "quota_bytes": None}
    # The base tensor (7) and the staged file (11) are shared, each counted once; eve's delta (3) is its own.
    assert report["totals"] == {"exclusive_bytes": 3, "shared_bytes": 18, "attributed_bytes": 21}
