"""SIGKILL the worker at every crash point of uploads, commits, ingest, rebase and GC; restart; check.

Each run: the scenario's first models are stored; a subprocess runs the rest (storage/core/faults.py kills
it at the named point); a fresh process opens the hub the way `deltahub serve` does (unfinished ingest
jobs resume) and finds every committed file byte-exact; GC with grace 0 then leaves the store holding
exactly what the catalog references. The client's retry finishes the work, and the stored form is the
same as a run nobody interrupted: nothing lost, nothing stored twice, no rebase forgotten.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.core.faults import CRASH_POINTS
from tests.reliability import scenario
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, killed, run_driver, tail
from tests.reliability.invariants import check_clean, check_committed, committed, footprint
from tests.reliability.test_crash_git import GIT_POINTS
from tests.reliability.test_crash_mirror import MIRROR_POINTS
from workers.jobs.gc import collect_garbage

# Every worker-side point, at a hit that falls in the middle of the work where a point repeats.
WORKER_POINTS = [
    "upload.mid_stream:2",
    "upload.after_staging_put",
    "upload.before_file_row",
    "upload.after_file_row:3",
    "commit.before_transaction",
    "commit.in_transaction",
    "commit.after_transaction:2",
    "ingest.after_start_job",
    "ingest.after_hashing",
    "ingest.after_choose_base:3",
    "ingest.mid_encode:5",
    "ingest.after_object_write:2",
    "ingest.before_mark_stored",
    "ingest.before_catalog_commit",
    "ingest.after_catalog_commit",
    "ingest.after_staging_delete",
    "ingest.before_finish_job",
    "rebase.after_objects_written",
    "rebase.mid_swap:2",
    "rebase.after_swap",
    "gc.mid_catalog_deletes",
    "gc.after_catalog_deletes",
    "gc.mid_object_deletes:2",
    # The second fine-tune's ingest: a delta against a stored base, cut while it writes (its last
    # object write: small tensors share packs, so the whole run writes only six objects).
    "ingest.mid_encode:28",
    "ingest.after_object_write:6",
]
# The same on PostgreSQL and S3: one point per stage of the write path.
DISTRIBUTED_POINTS = [
    "upload.mid_stream:2",
    "commit.in_transaction",
    "ingest.after_object_write:2",
    "ingest.before_catalog_commit",
    "rebase.mid_swap:2",
    "gc.mid_object_deletes:2",
]


def survive(backend: Backend, point: str, log: Path, reference: dict[str, int], figures: Figures) -> None:
    before = backend.hub()
    scenario.run_pre(before)
    # The scenario deletes org/old on purpose; everything else committed before the cut must stay.
    held_before = {sha: {w for w in where if w[0] != "org/old"} for sha, where in committed(before).items()}
    code = run_driver(backend, "steps", crash_at=point, log=log)
    assert killed(code), f"the driver exited with {code} instead of dying at {point}:\n{tail(log)}"

    hub = backend.restart()
    known = scenario.all_files()
    after_restart = check_committed(hub, known)
    assert after_restart.problems == []
    now = committed(hub)
    assert all(now.get(sha, set()) >= where for sha, where in held_before.items()), "a committed file vanished"
    collect_garbage(hub, grace_seconds=0)  # finishes a GC that was cut short; drops abandoned uploads
    assert check_clean(hub) == []

    scenario.run_steps(hub)  # the client retries
    final = check_committed(hub, known)
    assert final.problems == []
    for repo_id in scenario.FINAL:
        head = hub.resolve(repo_id, "main")
        tree = {e.path: e.file.sha256 for e in hub.list_tree(repo_id, head.oid)}
        assert tree == {path: scenario.sha256(data) for path, data in scenario.models()[repo_id].items()}
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    assert footprint(hub) == reference
    figures.survived(point, after_restart.bytes_checked + final.bytes_checked,
                     after_restart.bytes_lost + final.bytes_lost)


def test_every_crash_point_is_placed_and_tested() -> None:
    api_points = {p for p in CRASH_POINTS if p.startswith("api.")}
    tested = {p.split(":")[0] for p in WORKER_POINTS} | set(GIT_POINTS) | set(MIRROR_POINTS)
    assert tested | api_points == set(CRASH_POINTS)
    assert len(set(CRASH_POINTS)) >= 20
    root = Path(__file__).resolve().parents[2]
    sources = "".join(path.read_text() for package in ("storage", "workers", "service")
                      for path in (root / package).rglob("*.py"))
    assert [p for p in CRASH_POINTS if f'crash_point("{p}")' not in sources] == []


@pytest.mark.parametrize("point", WORKER_POINTS)
def test_worker_killed_at(point: str, local_backend: Backend, tmp_path: Path,
                          reference_footprint: dict[str, int], figures: Figures) -> None:
    survive(local_backend, point, tmp_path / "driver.log", reference_footprint, figures)


@pytest.mark.parametrize("point", DISTRIBUTED_POINTS)
def test_worker_killed_on_postgresql_and_s3(point: str, pg_s3_backend: Backend, tmp_path: Path,
                                            reference_footprint: dict[str, int], figures: Figures) -> None:
    survive(pg_s3_backend, point, tmp_path / "driver.log", reference_footprint, figures)


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in WORKER_POINTS if p not in DISTRIBUTED_POINTS])
def test_every_other_point_on_postgresql_and_s3(point: str, pg_s3_backend: Backend, tmp_path: Path,
                                                reference_footprint: dict[str, int], figures: Figures) -> None:
    survive(pg_s3_backend, point, tmp_path / "driver.log", reference_footprint, figures)
