"""Fixtures for the Xet tests: the real client with Xet on, a real embedded server, a fresh repository."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import HfApi

from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", Path.home() / ".cache" / "deltahub-dev-corpus"))


@pytest.fixture
def xet_client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME and Xet cache, no implicit token, and Xet left on (the client's default)."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    monkeypatch.setenv("HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    huggingface_hub.utils.disable_progress_bars()
    return home / "hub"


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
