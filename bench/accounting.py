"""What the per-namespace report adds to `deltahub admin report`: its SQL timed against the storage report's
own (the same-run reference), on synthetic catalogs of growing size.

A catalog of N files: each file one tensor of its own, half of them delta-coded against a base tensor
shared by ten files, in N/10 repositories spread over 20 namespaces, some files named by two
repositories of different namespaces. SQLite in a temporary directory (PostgreSQL with --database-url).

    python3 -m bench.accounting [--files 1000 10000] [--repeat 5] [--database-url URL --files N]

Prints one row per size: median seconds of storage_report (reference) and namespace_report.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from storage.catalog.accounting import namespace_report, storage_report
from storage.catalog.db import make_engine, upgrade
from storage.catalog.models import (
    Account,
    AccountKind,
    Commit,
    FileObject,
    FileSegment,
    Frame,
    Repository,
    StoreObject,
    Tensor,
    TreeEntry,
)

LINE = "bench <b@x> 0 +0000"
NAMESPACES = 20


def _sha(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def build(session: Session, n_files: int) -> None:
    session.execute(insert(StoreObject), [{"key": "packs/0", "size": 10**12, "kind": "pack"}])
    bases = [{"id": _sha("base", b), "dtype": "BF16", "shape": [1], "nbytes": 1000, "base_tensor_id": None}
             for b in range(n_files // 10 + 1)]
    session.execute(insert(Tensor), bases)
    tensors = [{"id": _sha("t", i), "dtype": "BF16", "shape": [1], "nbytes": 1000,
                "base_tensor_id": bases[i // 10]["id"] if i % 2 else None} for i in range(n_files)]
    session.execute(insert(Tensor), tensors)
    frames = [{"tensor_id": t["id"], "seq": 0, "raw_offset": 0, "raw_length": 1000, "object_key": "packs/0",
               "object_offset": 0, "object_length": 100 if t["base_tensor_id"] else 700, "checksum": 0}
              for t in bases + tensors]
    session.execute(insert(Frame), frames)
    shas = [_sha("f", i) for i in range(n_files)]
    session.execute(insert(FileObject), [{"sha256": s, "size": 1000, "kind": "safetensors", "state": "stored"}
                                         for s in shas])
    session.execute(insert(FileSegment), [{"file_sha256": s, "seq": 0, "offset": 0, "length": 1000,
                                           "tensor_id": tensors[i]["id"]} for i, s in enumerate(shas)])
    session.execute(insert(Account), [{"name": f"ns{n}", "kind": AccountKind.USER, "quota_bytes": 10**9}
                                      for n in range(NAMESPACES)])
    n_repos = max(1, n_files // 10)
    session.execute(insert(Repository), [{"id": r + 1, "namespace": f"ns{r % NAMESPACES}", "name": f"r{r}",
                                          "repo_type": "model", "private": False} for r in range(n_repos)])
    session.execute(insert(Commit), [{"oid": _sha("c", r)[:40], "repo_id": r + 1, "message": "m",
                                      "git_author": LINE, "git_committer": LINE} for r in range(n_repos)])
    entries = [{"commit_oid": _sha("c", i % n_repos)[:40], "path": f"p{i}", "file_sha256": s, "lfs": True,
                "git_oid": "0" * 40} for i, s in enumerate(shas)]
    # Every 7th file also in the next repository (another namespace): shared across tenants.
    entries += [{"commit_oid": _sha("c", (i + 1) % n_repos)[:40], "path": f"q{i}", "file_sha256": s, "lfs": True,
                 "git_oid": "0" * 40} for i, s in enumerate(shas) if i % 7 == 0 and n_repos > 1]
    session.execute(insert(TreeEntry), entries)
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        # Statistics, as autovacuum gathers them on a live catalog: without them PostgreSQL guesses
        # millions of rows for the recursive CTEs and spends a second JIT-compiling each query.
        session.execute(text("ANALYZE"))
        session.commit()


def median_seconds(run: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    if args.database_url and len(args.files) != 1:
        parser.error("--database-url takes one --files size (the database must be empty)")
    print(f"{'files':>8} {'storage_report s (reference)':>30} {'namespace_report s':>20} {'ratio':>7}")
    for n_files in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{tmp}/catalog.sqlite3"
            upgrade(url)
            engine = make_engine(url)
            with Session(engine) as session:
                build(session, n_files)
                reference = median_seconds(lambda: storage_report(session, top=0), args.repeat)
                mine = median_seconds(lambda: namespace_report(session), args.repeat)
                rows = namespace_report(session)["namespaces"]
                assert all(r["exclusive_bytes"] + r["shared_bytes"] == r["physical_bytes"] for r in rows)
            engine.dispose()
        print(f"{n_files:>8} {reference:>30.3f} {mine:>20.3f} {mine / reference:>7.2f}")


if __name__ == "__main__":
    main()
