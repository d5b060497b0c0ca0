"""Fixtures of the reliability suite: hub backends a subprocess can share, and the figures it reports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import scenario
from tests.reliability.figures import FIGURES, Figures
from tests.reliability.harness import Backend, s3_overrides
from tests.reliability.invariants import footprint
from workers.jobs.gc import collect_garbage


@pytest.fixture(autouse=True)
def _slow_only_when_asked(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") and os.environ.get("DELTAHUB_SLOW") != "1":
        pytest.skip("slow: set DELTAHUB_SLOW=1")


@pytest.fixture
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (FIGURES.kill_runs or FIGURES.bad_inputs or FIGURES.fuzz_iterations or FIGURES.concurrent_clients):
        return
    terminalreporter.write_sep("-", "deltahub reliability figures")
    for name, value in FIGURES.as_dict().items():
        terminalreporter.write_line(f"{name}: {value}")
    target = os.environ.get("DELTAHUB_RELIABILITY_REPORT")
    if target:
        FIGURES.write(Path(target))


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[Backend]:
    """SQLite catalog and local-directory store in tmp_path: the embedded mode."""
    backend = Backend("sqlite-local", {"data_dir": tmp_path / "hub", **scenario.HUB_SETTINGS})
    yield backend
    backend.close()


@pytest.fixture
def pg_s3_backend(tmp_path: Path, pg_database_url: str, s3_endpoint: str) -> Iterator[Backend]:
    """PostgreSQL catalog and an S3 bucket of its own (moto): the distributed mode's services."""
    bucket = f"deltahub-rel-{uuid.uuid4().hex[:12]}"
    backend = Backend("postgresql-s3", {
        "data_dir": tmp_path / "hub", "database_url": pg_database_url, **s3_overrides(s3_endpoint, bucket),
        **scenario.HUB_SETTINGS,
    })
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def reference_footprint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The stored form of the scenario run start to end with nothing cut short."""
    backend = Backend("reference", {"data_dir": tmp_path_factory.mktemp("reference"), **scenario.HUB_SETTINGS})
    hub = backend.hub()
    scenario.run_pre(hub)
    scenario.run_steps(hub)
    collect_garbage(hub, grace_seconds=0)
    result = footprint(hub)
    backend.close()
    return result


# The unmodified Hugging Face client, isolated from the user's own cache and token.
from tests.service.conftest import hf_client_env, lfs_client  # noqa: E402, F401
