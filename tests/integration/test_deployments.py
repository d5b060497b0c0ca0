"""Both deployments end to end, as processes, with the unmodified huggingface_hub client and transformers.

Distributed: `deltahub serve` (uvicorn) + a `deltahub worker` (Celery) subprocess, Redis, PostgreSQL
and an S3 server. Embedded: `deltahub serve` alone (SQLite, local directory, in-process worker).
Real corpus models are pushed with `upload_folder`, ingested, pulled with `snapshot_download`, and
loaded with `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained` from the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", "/nonexistent"))
pytestmark = pytest.mark.skipif(
    not (CORPUS / "corpus.json").exists(), reason="set DELTAHUB_CORPUS to the dev corpus directory"
)
MODELS = {"org/minilm-bf16": "minilm-bf16/base", "org/minilm-bf16-sre": "minilm-bf16/sre"}
SENTENCE = "deltahub stores fine-tunes as deltas against their base"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Deployment:
    url: str
    token: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def deltahub(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, *args: str, log: Path) -> None:
        handle = log.open("w")
        self.processes.append(subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=ROOT,
                                               env=self.env, stdout=handle, stderr=subprocess.STDOUT))

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert all(p.poll() is None for p in self.processes), "a deltahub process exited early"
            time.sleep(0.2)
        raise TimeoutError("deltahub did not become healthy")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def base_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELTAHUB_", "HF_"))}
    # The client as pip installs it: nothing switched off (hf_xet uploads LFS-sized files by Xet).
    env.update(PYTHONPATH=str(ROOT), HF_HOME=str(home / "hf"), HF_XET_CACHE=str(home / "hf" / "xet"),
               HF_HUB_DISABLE_TELEMETRY="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    return env


@pytest.fixture
def distributed(tmp_path: Path, pg_database_url: str, s3_endpoint: str, s3_store: object) -> Iterator[Deployment]:
    port = free_port()
    env = base_environment(tmp_path)
    redis_db = 1 + os.getpid() % 15
    env.update(
        DELTAHUB_ENVIRONMENT="production",
        DELTAHUB_DATA_DIR=str(tmp_path / "data"),
        DELTAHUB_DATABASE_URL=pg_database_url,
        DELTAHUB_STORE_BACKEND="s3",
        DELTAHUB_S3_ENDPOINT_URL=s3_endpoint,
        DELTAHUB_S3_BUCKET=s3_store.bucket,  # type: ignore[attr-defined]
        DELTAHUB_S3_PREFIX="deployment",
        DELTAHUB_S3_ACCESS_KEY_ID="testing",
        DELTAHUB_S3_SECRET_ACCESS_KEY="testing",
        DELTAHUB_BROKER_URL=f"redis://127.0.0.1:6379/{redis_db}",
        DELTAHUB_SECRET_KEY="integration-test-signing-key",
        DELTAHUB_GC_GRACE_SECONDS="600",
    )
    import redis

    redis.Redis.from_url(env["DELTAHUB_BROKER_URL"]).flushdb()
    deployment = Deployment(f"http://127.0.0.1:{port}", "", env)
    deployment.deltahub("admin", "migrate")
    deployment.token = deployment.deltahub("admin", "token", "create", "integration", "--write").splitlines()[-1]
    try:
        deployment.start("serve", "--port", str(port), log=tmp_path / "api.log")
        deployment.start("worker", "--concurrency", "1", log=tmp_path / "worker.log")
        deployment.wait_healthy()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Deployment]:
    port = free_port()
    data_dir = tmp_path / "data"
    deployment = Deployment(f"http://127.0.0.1:{port}", "", base_environment(tmp_path))
    try:
        deployment.start("serve", "--port", str(port), "--data-dir", str(data_dir), log=tmp_path / "serve.log")
        deployment.wait_healthy()
        deployment.token = (data_dir / "admin-token").read_text().strip()
        yield deployment
    finally:
        deployment.stop()


def push_and_pull(deployment: Deployment, tmp_path: Path, transport: str = "xet") -> None:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=deployment.url, token=deployment.token)
    expected: dict[str, dict[str, str]] = {}
    # The fine-tune first: its base arrives after it and is found, measured and rebased onto.
    for repo, source in sorted(MODELS.items(), reverse=True):
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(CORPUS / source), repo_id=repo, commit_message=f"push {source}")
        expected[repo] = {p.relative_to(CORPUS / source).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                          for p in (CORPUS / source).rglob("*") if p.is_file()}
    shas = {sha for files in expected.values() for sha in files.values()}
    deadline = time.monotonic() + 240
    auth = {"Authorization": f"Bearer {deployment.token}"}
    pending = set(shas)
    while pending and time.monotonic() < deadline:
        for sha in list(pending):
            info = httpx.get(f"{deployment.url}/api/v1/files/{sha}", headers=auth, timeout=10).json()
            assert info["state"] != "failed", f"ingest of {sha} failed: {info['error']}"
            if info["state"] == "stored" and info["ingest"] == "done":
                pending.discard(sha)
        time.sleep(0.5)
    assert not pending, f"{len(pending)} files still not ingested"
    sent = httpx.get(f"{deployment.url}/api/v1/stats", timeout=10).json()["transfers"]
    if transport == "xet":
        assert sent["xet_files_staged"] >= 2 and sent["lfs_put_requests"] == 0
    else:
        assert sent["lfs_put_requests"] >= 2 and sent["xet_xorbs_received"] == 0
    # The workers' counts reach the API's /metrics through the catalog (the first scrape: nothing cached).
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(httpx.get(f"{deployment.url}/metrics", headers=auth).text)
        for sample in family.samples
    }
    assert metrics[("deltahub_ingest_attempts_total", (("outcome", "done"),))] >= len(shas)
    assert metrics[("deltahub_ingest_job_duration_seconds_count", ())] >= len(shas)
    assert metrics[("deltahub_ingest_bytes_total", ())] > 0
    stats = httpx.get(f"{deployment.url}/api/v1/stats", timeout=10).json()["storage"]
    assert stats["physical_bytes"] < 0.75 * stats["logical_bytes"]
    assert stats["savings"]["delta_coding"] > 0
    for repo, files in expected.items():
        local = snapshot_download(repo_id=repo, endpoint=deployment.url, token=deployment.token,
                                  local_dir=tmp_path / "pulled" / repo)
        got = {p.relative_to(local).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in Path(local).rglob("*") if p.is_file() and ".cache" not in p.parts}
        if ".gitattributes" not in files:
            got.pop(".gitattributes", None)  # written by the repository's initial commit
        assert got == files


LOAD = r"""
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
repo, local, sentence = sys.argv[1:4]
out = {}
for name, where in (("hub", repo), ("local", local)):
    tokenizer = AutoTokenizer.from_pretrained(where)
    model = AutoModel.from_pretrained(where).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(sentence, return_tensors="pt")).last_hidden_state
    out[name] = hidden.float().flatten().tolist()
print(json.dumps(out["hub"] == out["local"]))
"""


def from_pretrained_matches(deployment: Deployment, repo: str, source: str) -> bool:
    env = {**deployment.env, "HF_ENDPOINT": deployment.url, "HF_TOKEN": deployment.token}
    done = subprocess.run([sys.executable, "-c", LOAD, repo, str(CORPUS / source), SENTENCE], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_distributed_deployment(distributed: Deployment, tmp_path: Path, transport: str) -> None:
    """Once through Xet (the client's default) and once through LFS (Xet switched off)."""
    push_and_pull(distributed, tmp_path, transport)
    assert from_pretrained_matches(distributed, "org/minilm-bf16-sre", "minilm-bf16/sre")


def test_embedded_deployment(embedded: Deployment, tmp_path: Path, hf_client_env: Path) -> None:
    push_and_pull(embedded, tmp_path)
    assert from_pretrained_matches(embedded, "org/minilm-bf16", "minilm-bf16/base")
