"""Counters of work done, kept in the catalog: every process adds to the same rows.

Ingest workers (threads of the embedded server, or Celery processes on other machines) and GC add to
them in the transaction that records the work itself (a job's end, a GC run), so a count is exact: a
job retried after a crash before its commit is counted once. /metrics reads the whole table (a few
dozen rows) once per cache period, never a scan of the work tables.

A counter row is (name, label, value). A histogram of durations is `<name>_bucket` rows labelled by
their upper bound (cumulative, as Prometheus exposes them, "+Inf" included) plus `<name>_sum` and
`<name>_count`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.catalog.models import MetricCounter

# The counters (exposed by /metrics with a deltahub_ prefix).
INGEST_DURATION = "ingest_job_duration_seconds"  # histogram of attempts that finished their job
INGEST_BYTES = "ingest_bytes"  # file bytes of finished jobs
INGEST_ATTEMPTS = "ingest_attempts"  # by outcome: done, retry, failed
GC_RUNS, GC_FREED_BYTES, GC_DELETED_OBJECTS = "gc_runs", "gc_freed_bytes", "gc_deleted_objects"

# Seconds an ingest job takes: a config file in milliseconds, a multi-GB shard in minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

Counts = dict[str, dict[str, float]]


def add(session: Session, name: str, amount: float, label: str = "") -> None:
    """counter[name, label] += amount, created at 0 if new (one atomic upsert on either database)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(MetricCounter).values(name=name, label=label, value=amount)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[MetricCounter.name, MetricCounter.label],
            set_={"value": MetricCounter.value + statement.excluded.value},
        )
    )


def observe(session: Session, name: str, value: float, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
    """One observation into histogram `name`."""
    for bound in buckets:
        if value <= bound:
            add(session, f"{name}_bucket", 1, bucket_label(bound))
    add(session, f"{name}_bucket", 1, "+Inf")
    add(session, f"{name}_sum", value)
    add(session, f"{name}_count", 1)


def bucket_label(bound: float) -> str:
    return repr(float(bound))


def read(session: Session) -> Counts:
    """Every counter: name -> label -> value."""
    out: Counts = {}
    for row in session.execute(select(MetricCounter.name, MetricCounter.label, MetricCounter.value)):
        out.setdefault(row.name, {})[row.label] = float(row.value)
    return out
