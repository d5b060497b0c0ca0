"""The upstream of a mirror under test: a second deltahub (ingesting) behind a proxy that counts, cuts,
slows or falsifies what it forwards (tests/upstream_proxy.py). Shared by the embedded and the
distributed mirror tests; import the fixtures by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import TEST_OPTIONS, RunningService, start_service
from tests.upstream_proxy import UpstreamProxy


@pytest.fixture
def upstream(tmp_path: Path, xet_client_env: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path / "upstream", TEST_OPTIONS, ingest=True)


@pytest.fixture
def proxy(upstream: RunningService) -> Iterator[UpstreamProxy]:
    running = UpstreamProxy(upstream.url)
    yield running
    running.close()
