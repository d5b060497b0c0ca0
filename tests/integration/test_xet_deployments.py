"""Xet uploads in the distributed deployment: API + Celery worker + PostgreSQL + Redis + an S3 server,
pushed to by the real client with Xet on (its default)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
from huggingface_hub import HfApi, snapshot_download

from tests.integration.test_deployments import CORPUS, Deployment, distributed, embedded, pytestmark
from tests.service.xet_support import xet_client_env

__all__ = ["distributed", "embedded", "pytestmark", "xet_client_env"]  # fixtures used by name; the corpus skip

SOURCE = "minilm-bf16/sre"


def wait_stored(deployment: Deployment, shas: set[str], timeout: float = 240) -> None:
    auth = {"Authorization": f"Bearer {deployment.token}"}
    pending, deadline = set(shas), time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for sha in list(pending):
            info = httpx.get(f"{deployment.url}/api/v1/files/{sha}", headers=auth, timeout=10).json()
            assert info["state"] != "failed", f"ingest of {sha} failed: {info['error']}"
            if info["state"] == "stored" and info["ingest"] == "done":
                pending.discard(sha)
        time.sleep(0.5)
    assert not pending, f"{len(pending)} files still not ingested"


def transfers(deployment: Deployment) -> dict[str, int]:
    return httpx.get(f"{deployment.url}/api/v1/stats", timeout=10).json()["transfers"]


def test_xet_push_to_the_distributed_deployment(distributed: Deployment, tmp_path: Path, xet_client_env: Path) -> None:
    api = HfApi(endpoint=distributed.url, token=distributed.token)
    repo = "org/minilm-bf16-sre-xet"
    api.create_repo(repo)
    api.upload_folder(folder_path=str(CORPUS / SOURCE), repo_id=repo)
    sent = transfers(distributed)
    assert sent["xet_files_staged"] >= 1 and sent["xet_xorb_bytes"] > 0 and sent["lfs_put_requests"] == 0
    files = {p.relative_to(CORPUS / SOURCE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (CORPUS / SOURCE).rglob("*") if p.is_file()}
    wait_stored(distributed, set(files.values()))
    local = snapshot_download(repo_id=repo, endpoint=distributed.url, token=distributed.token,
                              local_dir=tmp_path / "pulled")
    got = {p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in Path(local).rglob("*") if p.is_file() and ".cache" not in p.parts}
    got.pop(".gitattributes", None)  # written by the repository's initial commit
    assert got == files
    # Pushed again into another repository: the global dedup answer says every chunk is held.
    api.create_repo("org/again")
    api.upload_folder(folder_path=str(CORPUS / SOURCE), repo_id="org/again")
    again = transfers(distributed)
    assert again["xet_xorb_bytes"] == sent["xet_xorb_bytes"] and again["xet_dedup_hits"] > sent["xet_dedup_hits"]


def test_xet_push_to_deltahub_serve(embedded: Deployment, tmp_path: Path, xet_client_env: Path) -> None:
    """`deltahub serve` as users run it: catalog-backed tokens, the in-process worker."""
    api = HfApi(endpoint=embedded.url, token=embedded.token)
    repo = "org/minilm-bf16-sre"
    api.create_repo(repo)
    api.upload_folder(folder_path=str(CORPUS / SOURCE), repo_id=repo)
    assert transfers(embedded)["xet_files_staged"] >= 1
    files = {p.relative_to(CORPUS / SOURCE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (CORPUS / SOURCE).rglob("*") if p.is_file()}
    wait_stored(embedded, set(files.values()))
    local = snapshot_download(repo_id=repo, endpoint=embedded.url, local_dir=tmp_path / "pulled")
    got = {p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in Path(local).rglob("*") if p.is_file() and ".cache" not in p.parts}
    got.pop(".gitattributes", None)  # written by the repository's initial commit
    assert got == files
