"""The lineage part of bench/scale.py: does base choice find the true parent among 1,000 relatives?

A synthetic lineage grown from the real dev-corpus BF16 MiniLM base: each generation moves 10% of the
elements by 1-3 ulps (the issue's model of a fine-tune step); a tree of children, grandchildren and
great-grandchildren of the base, plus a few unrelated runs (the same architecture, other values) with
descendants of their own. Every file is pushed in random order with no base declared, and the same files
are pushed again into a second hub in tree order, each declaring its true parent (the reference).

Files are cut from the base to keep 1,000 of them within minutes on 2 cores: the tensors of the first
`--layers` encoder layers, 2-D ones truncated to their first `--rows` rows (`--rows 0`: whole).
Nodes are regenerated from their path to the root (seeded per node), so nothing but the tree is held.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.storage import _bf16_file, new_hub
from storage.app.hub import Hub
from storage.catalog import files, plans
from tests.hubs import ingest_all, push

# Share of elements a generation moves, and by how many ulps.
MOVED = 0.10
ULPS = (-3, -2, -1, 1, 2, 3)
# Of new nodes: the share starting an unrelated run's tree, and the share hung from their tree's root.
UNRELATED_RUNS = 3
UNRELATED_SHARE = 0.05
ROOT_SHARE = 0.3
MAX_GENERATION = 3


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    parent: int | None  # None: a root (the real base, or an unrelated run)
    tree: int
    generation: int


def base_tensors(corpus: Path, layers: int, rows: int) -> dict[str, np.ndarray]:
    data = (corpus / "minilm-bf16/base/model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    wanted = tuple(f"encoder.layer.{i}." for i in range(layers))
    out = {}
    for name, v in sorted(header.items()):
        if v["dtype"] != "BF16" or not name.startswith(wanted):
            continue
        a, b = v["data_offsets"]
        bits = np.frombuffer(data[8 + n + a : 8 + n + b], "<u2").reshape(v["shape"])
        out[name] = bits[:rows].copy() if rows and bits.ndim == 2 else bits.copy()
    return out


def grow_tree(descendants: int, seed: int) -> list[Node]:
    rng = random.Random(seed)
    nodes = [Node(0, None, 0, 0)]
    roots = [0]
    for _ in range(descendants):
        i = len(nodes)
        if len(roots) <= UNRELATED_RUNS and rng.random() < UNRELATED_SHARE:
            nodes.append(Node(i, None, len(roots), 0))
            roots.append(i)
            continue
        tree = 0 if rng.random() < 0.9 or len(roots) == 1 else rng.randrange(1, len(roots))
        if rng.random() < ROOT_SHARE:
            parent = nodes[roots[tree]]
        else:
            parent = rng.choice([x for x in nodes if x.tree == tree and x.generation < MAX_GENERATION])
        nodes.append(Node(i, parent.id, tree, parent.generation + 1))
    return nodes


def materialise(node: Node, nodes: list[Node], base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's tensors: its root's, then each generation's moves down the path (seeded by node id)."""
    path = []
    at: Node | None = node
    while at is not None and at.parent is not None:
        path.append(at.id)
        at = nodes[at.parent]
    assert at is not None
    if at.id == 0:
        tensors = {k: v.copy() for k, v in base.items()}
    else:  # an unrelated run: the same shapes and scale, other values
        rng = np.random.default_rng(10_000 + at.id)
        tensors = {}
        for k, v in base.items():
            f = (v.astype(np.uint32) << 16).view(np.float32)
            fresh = rng.standard_normal(v.shape).astype(np.float32) * float(np.std(f)) + float(np.mean(f))
            tensors[k] = (fresh.view(np.uint32) >> 16).astype(np.uint16)
    for node_id in reversed(path):
        rng = np.random.default_rng(node_id)
        for k in sorted(tensors):
            t = tensors[k].reshape(-1)
            pick = np.flatnonzero(rng.random(t.size) < MOVED)
            t[pick] = (t[pick].astype(np.int32) + rng.choice(ULPS, pick.size)).astype(np.uint16)
    return tensors


def repo(node: Node) -> str:
    return f"lineage/n{node.id}"


def file_bytes(hub: Hub, sha: str) -> int:
    """Encoded bytes of the frames of the file's own tensors, as the catalog holds them now."""
    with hub.session() as s:
        segs = plans.segments(s, sha)
        tp = plans.tensor_plans(s, {x.tensor_id for x in segs}, with_bases=False)
    return sum(f.object_length for p in tp.values() for f in p.frames)


def run(hub: Hub, order: list[Node], blobs: dict[int, bytes], *, declare: bool) -> list[float]:
    """Push and ingest each node in `order`; the ingest seconds of each."""
    seconds = []
    nodes_by_id = {n.id: n for n in order}
    for k, node in enumerate(order):
        if k % 100 == 0:
            print(f"{'declared' if declare else 'random'}: {k}/{len(order)} pushed", file=sys.stderr, flush=True)
        declared = repo(nodes_by_id[node.parent]) if (declare and node.parent is not None) else None
        jobs = push(hub, repo(node), {"model.safetensors": blobs[node.id]}, declared_base=declared)
        started = time.perf_counter()
        ingest_all(hub, jobs)
        seconds.append(time.perf_counter() - started)
    return seconds


def bench_lineage(corpus: Path, work: Path, *, descendants: int, layers: int, rows: int, seed: int,
                  reference: bool) -> dict[str, object]:  # fmt: skip
    base = base_tensors(corpus, layers, rows)
    nodes = grow_tree(descendants, seed)
    blobs = {n.id: _bf16_file(materialise(n, nodes, base)) for n in nodes}
    sha = {i: hashlib.sha256(b).hexdigest() for i, b in blobs.items()}
    shuffled = nodes[:]
    random.Random(seed + 1).shuffle(shuffled)
    hub = new_hub(work / "random")
    seconds = run(hub, shuffled, blobs, declare=False)
    with hub.session() as s:
        chosen = {n.id: files.snapshot(s, sha[n.id]).base_sha256 for n in nodes}
    got = {n.id: file_bytes(hub, sha[n.id]) for n in nodes}
    out: dict[str, object] = {
        "files": len(nodes), "file_bytes": len(blobs[0]), "raw_bytes": sum(len(b) for b in blobs.values()),
        "unrelated_roots": sum(1 for n in nodes if n.parent is None) - 1,
        "true_parent": sum(1 for n in nodes if chosen[n.id] == (sha[n.parent] if n.parent is not None else None)),
        "stored": sum(got.values()), "physical": int(hub.stats()["physical_bytes"]),
        "ingest_s_at_10": statistics.median(seconds[5:15]),
        "ingest_s_at_n": statistics.median(seconds[-10:]),
        "ingest_s_total": sum(seconds),
    }  # fmt: skip
    hub.close()
    print_lineage(out, descendants=descendants, layers=layers, rows=rows)  # in case the reference run is cut short
    if reference:
        ref_hub = new_hub(work / "declared")
        run(ref_hub, nodes, blobs, declare=True)  # tree order: every parent is stored before its children
        want = {n.id: file_bytes(ref_hub, sha[n.id]) for n in nodes}
        ref_hub.close()
        out["reference_stored"] = sum(want.values())
        out["as_good"] = sum(
            1 for n in nodes
            if chosen[n.id] == (sha[n.parent] if n.parent is not None else None) or got[n.id] <= want[n.id] * 1.01
        )  # fmt: skip
    return out


def print_lineage(r: dict[str, object], *, descendants: int, layers: int, rows: int) -> None:
    files_ = int(str(r["files"]))
    print(f"\n## Lineage: {descendants} descendants of the BF16 MiniLM base, random order, no base declared\n")
    print(f"{files_} files of {int(str(r['file_bytes'])) / 1e3:.0f} kB (first {layers} encoder layer(s), "
          f"2-D tensors cut to {rows or 'all'} rows), {r['unrelated_roots']} unrelated runs; "
          f"{MOVED:.0%} of elements moved 1-3 ulps per generation\n")  # fmt: skip
    print("| measure | value |\n|---|---|")
    print(f"| chosen base is the true parent | {int(str(r['true_parent'])) / files_:.1%} |")
    if "as_good" in r:
        print(f"| ... or stores within 1.01x of the true parent | {int(str(r['as_good'])) / files_:.1%} |")
    print(f"| stored bytes (referenced frames) | {int(str(r['stored'])) / 1e6:.2f} MB |")
    if "reference_stored" in r:
        ratio = int(str(r["stored"])) / int(str(r["reference_stored"]))
        print(f"| stored bytes declaring every true parent (reference) | "
              f"{int(str(r['reference_stored'])) / 1e6:.2f} MB ({ratio:.3f}x) |")  # fmt: skip
    print(f"| physical bytes (before GC) | {int(str(r['physical'])) / 1e6:.2f} MB |")
    at10, atn = float(str(r["ingest_s_at_10"])), float(str(r["ingest_s_at_n"]))
    print(f"| ingest per file at ~10 members (median of pushes 6-15) | {at10 * 1e3:.0f} ms |")
    print(f"| ingest per file at ~{files_} members (median of last 10) | {atn * 1e3:.0f} ms ({atn / at10:.2f}x) |")
    print(f"| ingest total | {float(str(r['ingest_s_total'])):.0f} s |")
