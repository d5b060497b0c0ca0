"""Fixtures for the Xet tests: the real client with Xet on, a real embedded server, a fresh repository."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", Path.home() / ".cache" / "deltahub-dev-corpus"))


@pytest.fixture
def xet_client_env(hf_client_env: Path) -> Path:
    """The client as pip installs it, Xet on (tests/service/conftest.py `hf_client_env`)."""
    return hf_client_env


@pytest.fixture
def xet_service(tmp_path: Path, xet_client_env: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path, TEST_OPTIONS, ingest=True)


def new_repo(api: HfApi) -> str:
    # The client keeps a shard cache per CAS URL; a fresh name keeps a reused port from meeting an old cache.
    repo_id = f"alice/xet-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    return repo_id


def file_state(service: RunningService, sha256: str) -> str:
    return service.http.get(f"/api/v1/files/{sha256}", headers=AUTH).json()["state"]
