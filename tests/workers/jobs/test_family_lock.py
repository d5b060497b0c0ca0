"""Relatives ingested at the same time, on PostgreSQL with two threads: the later waits for the earlier
and is delta-coded against it from the start (not stored plain and re-encoded by settling)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from sqlalchemy import select

from storage.catalog import files, sketches
from storage.catalog.models import FamilyIngest, utcnow
from storage.core.families import fingerprint
from storage.core.formats.base import TensorEntry
from storage.core.formats.registry import read_layout
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.family_lock import STALE_SECONDS
from workers.jobs.ingest import IngestResult, run_ingest

# Large enough (8 MiB) that encoding takes far longer than choosing a base: without the lock, both
# ingests choose before either is stored.
LAYOUT = {f"layer.{i}.weight": (512, 512) for i in range(8)}


def parsed_tensors(data: bytes) -> list[TensorEntry]:
    layout = read_layout("safetensors", lambda a, b: data[a:b], len(data), max_header_bytes=1 << 20)
    assert layout.tensors is not None
    return list(layout.tensors)


def test_two_relatives_ingested_at_once_are_not_both_stored_plain(
    tmp_path: Path, pg_database_url: str, local_store: ObjectStore
) -> None:
    hub = make_hub(tmp_path, pg_database_url, local_store)
    base_w = make_weights(7, LAYOUT)
    first, second = (to_safetensors(finetune(base_w, seed)) for seed in (8, 9))
    jobs = [push(hub, f"org/tuned-{k}", {"model.safetensors": data})[0] for k, data in enumerate((first, second))]
    barrier = threading.Barrier(2)
    results: dict[int, IngestResult | None] = {}

    def run(job_id: int) -> None:
        barrier.wait()
        results[job_id] = run_ingest(hub, job_id)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    done = [results[job] for job in jobs]
    assert all(r is not None for r in done)
    coded = sorted((r.delta_tensors > 0, r.base_sha256 is not None) for r in done if r is not None)
    assert coded == [(False, False), (True, True)], "one is the other's base from its first encoding"
    shas = {hashlib.sha256(d).hexdigest() for d in (first, second)}
    with hub.session() as s:
        bases = {sha: files.snapshot(s, sha).base_sha256 for sha in shas}
    plain = [sha for sha, base in bases.items() if base is None]
    assert len(plain) == 1 and bases[(shas - set(plain)).pop()] == plain[0]
    for data in (first, second):
        assert read_all(hub, hashlib.sha256(data).hexdigest()) == data
    hub.close()


def test_a_lease_left_by_a_dead_ingest_is_taken_over_by_its_retry_at_once(
    tmp_path: Path, pg_database_url: str, local_store: ObjectStore
) -> None:
    hub = make_hub(tmp_path, pg_database_url, local_store)
    data = to_safetensors(make_weights(10))
    job = push(hub, "org/model", {"model.safetensors": data})[0]
    sha = hashlib.sha256(data).hexdigest()
    with hub.session() as s:  # what an attempt killed while encoding leaves behind
        assert sketches.take_family(s, fingerprint(parsed_tensors(data)), f"{sha}:killed", stale_before=utcnow())
    started = time.monotonic()
    result = run_ingest(hub, job)
    assert result is not None and result.state == "stored"
    assert time.monotonic() - started < STALE_SECONDS / 3
    with hub.session() as s:
        assert s.scalars(select(FamilyIngest)).all() == [], "the lease is released after the commit"
    hub.close()
