"""git push and clone with the real git and git-lfs on both deployments: the distributed one (API +
Celery worker + PostgreSQL + Redis + an S3 server) and `deltahub serve`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.integration.test_deployments import Deployment, distributed, embedded, pytestmark
from tests.integration.test_xet_deployments import wait_stored
from tests.service.git_support import Git

__all__ = ["distributed", "embedded", "pytestmark"]  # fixtures used by name; the corpus skip


@pytest.mark.parametrize("which", ["distributed", "embedded"])
def test_git_push_then_clone_and_hf_hub_download(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    deployment: Deployment = request.getfixturevalue(which)
    api = HfApi(endpoint=deployment.url, token=deployment.token)
    api.create_repo("org/git-pushed")
    git = Git(tmp_path / "home", deployment.url, deployment.token)
    git.run("clone", f"{deployment.url}/org/git-pushed", "work", cwd=tmp_path)
    work = tmp_path / "work"
    weights = os.urandom(200_000)
    (work / "model.bin").write_bytes(weights)
    (work / "config.json").write_bytes(b'{"a": 1}\n')
    git.run("add", ".", cwd=work)
    git.run("commit", "-m", "pushed by git", cwd=work)
    git.run("push", "origin", "main", cwd=work)
    head = git.out("rev-parse", "HEAD", cwd=work)
    assert api.model_info("org/git-pushed").sha == head
    wait_stored(deployment, {hashlib.sha256(weights).hexdigest()})
    got = hf_hub_download("org/git-pushed", "model.bin", endpoint=deployment.url, token=deployment.token,
                          cache_dir=str(tmp_path / "cache"))
    assert Path(got).read_bytes() == weights
    git.run("clone", f"{deployment.url}/org/git-pushed", "again", cwd=tmp_path)
    assert git.out("rev-parse", "HEAD", cwd=tmp_path / "again") == head
    assert (tmp_path / "again/model.bin").read_bytes() == weights
