"""Work counters in the catalog: exact under concurrent writers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from storage.catalog import counters
from storage.catalog.db import session_factory, session_scope


def test_counters_add_up_and_histograms_are_cumulative(migrated_engine: Engine) -> None:
    factory = session_factory(migrated_engine)
    with session_scope(factory) as s:
        counters.add(s, "gc_runs", 1)
        counters.add(s, "gc_runs", 2)
        counters.add(s, "ingest_attempts", 1, "done")
        for seconds in (0.07, 3.0, 4000.0):
            counters.observe(s, "d", seconds)
    with factory() as s:
        counts = counters.read(s)
    assert counts["gc_runs"] == {"": 3.0}
    assert counts["ingest_attempts"] == {"done": 1.0}
    buckets = counts["d_bucket"]
    assert buckets.get(counters.bucket_label(0.05), 0) == 0
    assert buckets[counters.bucket_label(0.1)] == 1
    assert buckets[counters.bucket_label(5)] == 2
    assert buckets[counters.bucket_label(1800)] == 2
    assert buckets["+Inf"] == 3
    assert counts["d_count"] == {"": 3.0} and counts["d_sum"][""] == 4003.07


def test_concurrent_writers_lose_no_increment(migrated_engine: Engine) -> None:
    factory = session_factory(migrated_engine)
    threads_n, each = 4, 25

    def work() -> None:
        for _ in range(each):
            with session_scope(factory) as s:
                counters.add(s, "ingest_bytes", 10)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with factory() as s:
        assert counters.read(s)["ingest_bytes"][""] == threads_n * each * 10
