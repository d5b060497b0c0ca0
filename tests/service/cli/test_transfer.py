"""`deltahub push` and `deltahub pull` end to end: a real `deltahub serve` process, the CLI in another.

The server is started exactly as a user would (embedded mode, a fresh data directory, its first-start
admin token); the client runs with a private HF_HOME and no Hugging Face token.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.cli.download import PARTIAL_DIR
from tests.models import finetune, make_weights, to_safetensors

ROOT = Path(__file__).resolve().parents[3]
# Above the server's 1 MiB inline limit, so the model travels by LFS (where dedup before transfer acts).
LAYOUT = {"embeddings.weight": (2048, 160), "layer.0.weight": (256, 160), "norm.weight": (160,)}


@dataclass
class Server:
    url: str
    token: str
    data_dir: Path
    env: dict[str, str]

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/api/v1/stats", timeout=10).json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELTAHUB_", "HF_"))}
    env.update(HF_HOME=str(home / "hf"), PYTHONPATH=str(ROOT), COLUMNS="200")
    return env


def deltahub(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("deltahub-serve")
    env = _environment(home)
    port = _free_port()
    data_dir = home / "data"
    log = open(home / "serve.log", "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"deltahub serve did not start:\n{(home / 'serve.log').read_text()}")
        time.sleep(0.2)
    token_file = data_dir / "admin-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert str(token_file) in (home / "serve.log").read_text().replace("\n", "")
    yield Server(url, token_file.read_text().strip(), data_dir, env)
    process.terminate()
    process.wait(timeout=30)
    log.close()


def write_model(folder: Path, weights: dict, readme: str = "# a test model\n") -> dict[str, bytes]:
    files = {
        "model.safetensors": to_safetensors(weights),
        "config.json": json.dumps({"hidden_size": 160}).encode(),
        "README.md": readme.encode(),
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def assert_same_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def test_push_wait_then_pull_byte_exact(server: Server, tmp_path: Path) -> None:
    base_w = make_weights(1, LAYOUT)
    base = write_model(tmp_path / "base", base_w)
    tuned = write_model(tmp_path / "tuned", finetune(base_w, 2), "---\nbase_model: org/base\n---\n")
    common = ("--endpoint", server.url, "--token", server.token)
    pushed = deltahub("push", str(tmp_path / "base"), "org/base", "--wait", *common, env=server.env)
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert "stored 3 of 3 files" in pushed.stdout
    pushed = deltahub(
        "push", str(tmp_path / "tuned"), "org/tuned", "--wait", "-m", "fine-tune", *common, env=server.env
    )
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert "committed" in pushed.stdout and "saved" in pushed.stdout

    pulled = deltahub("pull", "org/tuned", str(tmp_path / "out"), "--endpoint", server.url, env=server.env)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert "SHA-256 verified" in pulled.stdout
    assert_same_files(tmp_path / "out", tuned)

    report = deltahub("admin", "report", "--format", "json", "--data-dir", str(server.data_dir), env=server.env)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    family = next(f for f in document["families"] if len(f["members"]) >= 2)
    coded = {m["sha256"]: m["base_sha256"] for m in family["members"]}
    tuned_sha = hashlib.sha256(tuned["model.safetensors"]).hexdigest()
    assert coded[tuned_sha] == hashlib.sha256(base["model.safetensors"]).hexdigest()


def test_known_files_are_not_sent_again(server: Server, tmp_path: Path) -> None:
    files = write_model(tmp_path / "model", make_weights(5, LAYOUT))
    common = ("--endpoint", server.url, "--token", server.token)
    assert deltahub("push", str(tmp_path / "model"), "org/first", *common, env=server.env).returncode == 0
    before = server.stats()["transfers"]
    again = deltahub("push", str(tmp_path / "model"), "org/second", "--private", *common, env=server.env)
    assert again.returncode == 0, again.stderr + again.stdout
    after = server.stats()["transfers"]
    assert after["lfs_put_bytes"] == before["lfs_put_bytes"]
    assert after["lfs_objects_already_held"] == before["lfs_objects_already_held"] + 1
    big = len(files["model.safetensors"])
    assert "1 of 3 files" in again.stdout and f"sent {big}" not in again.stdout
    # A private repository is invisible without a token, and readable with one.
    anonymous = deltahub("pull", "org/second", str(tmp_path / "anon"), "--endpoint", server.url, env=server.env)
    assert anonymous.returncode == 3 and "--token" in anonymous.stderr
    pulled = deltahub("pull", "org/second", str(tmp_path / "out"), *common, env=server.env)
    assert pulled.returncode == 0, pulled.stderr
    assert_same_files(tmp_path / "out", files)


def test_pull_resumes_a_partial_file_and_checks_it(server: Server, tmp_path: Path) -> None:
    files = write_model(tmp_path / "model", make_weights(9, LAYOUT))
    common = ("--endpoint", server.url, "--token", server.token)
    assert deltahub("push", str(tmp_path / "model"), "org/resume", *common, env=server.env).returncode == 0
    model = files["model.safetensors"]
    out = tmp_path / "out"
    partial = out / PARTIAL_DIR / f"{hashlib.sha256(model).hexdigest()}.partial"
    partial.parent.mkdir(parents=True)
    # An interrupted download whose first bytes were damaged: resuming keeps them, the check catches it.
    partial.write_bytes(b"\x00" * 1000)
    damaged = deltahub("pull", "org/resume", str(out), "--endpoint", server.url, env=server.env)
    assert damaged.returncode == 5, damaged.stderr + damaged.stdout
    assert "model.safetensors" in damaged.stderr and "Traceback" not in damaged.stderr
    assert not (out / "model.safetensors").exists() and not partial.exists()
    # A sound partial file is continued, not fetched again, and the result is exact.
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(model[: len(model) // 2])
    resumed = deltahub("pull", "org/resume", str(out), "--endpoint", server.url, env=server.env)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert_same_files(out, files)
    assert not (out / ".cache").exists()  # a finished pull leaves only the repository's files


def test_client_errors_exit_with_their_codes(server: Server, tmp_path: Path) -> None:
    write_model(tmp_path / "model", make_weights(11))
    folder = str(tmp_path / "model")
    cases = [
        (deltahub("pull", "org/missing", str(tmp_path / "o"), "--endpoint", server.url, env=server.env), 3),
        (deltahub("push", folder, "org/x", "--endpoint", server.url, env=server.env), 8),
        (deltahub("push", folder, "org/x", "--endpoint", server.url, "--token", "dh_wrong", env=server.env), 8),
        (
            deltahub(
                "push",
                folder,
                "org/x",
                "--endpoint",
                f"http://127.0.0.1:{_free_port()}",
                "--token",
                "t",
                env=server.env,
            ),
            7,
        ),
        (deltahub("push", folder, "not a repo!", "--endpoint", server.url, env=server.env), 2),
    ]
    assert (
        deltahub("push", folder, "org/x", "--endpoint", server.url, "--token", server.token, env=server.env).returncode
        == 0
    )
    cases.append(
        (
            deltahub(
                "pull", "org/x", str(tmp_path / "o"), "--revision", "nope", "--endpoint", server.url, env=server.env
            ),
            3,
        )
    )
    for result, code in cases:
        assert result.returncode == code, (result.args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_push_base_flag_records_the_declared_base(server: Server, tmp_path: Path) -> None:
    import sqlite3

    weights = make_weights(7, LAYOUT)
    files = write_model(tmp_path / "tuned", finetune(weights, 8))
    common = ("--endpoint", server.url, "--token", server.token)
    pushed = deltahub("push", str(tmp_path / "tuned"), "org/declared", "--base", "org/some-base", *common,
                      env=server.env)
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    with sqlite3.connect(server.data_dir / "catalog.sqlite3") as db:
        (declared,) = db.execute("SELECT declared_base FROM file_objects WHERE sha256 = ?", (sha,)).fetchone()
    assert declared == "org/some-base"
    rejected = deltahub("push", str(tmp_path / "tuned"), "org/declared", "--base", "not/a/repo", *common,
                        env=server.env)
    assert rejected.returncode != 0


def test_the_access_log_masks_upload_signatures(server: Server) -> None:
    data = os.urandom(4096)
    oid = hashlib.sha256(data).hexdigest()
    headers = {"Authorization": f"Bearer {server.token}"}
    httpx.post(f"{server.url}/api/repos/create", json={"name": "logged", "organization": "admin"},
               headers=headers, timeout=10)
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    answer = httpx.post(f"{server.url}/admin/logged.git/info/lfs/objects/batch", json=batch, headers=headers,
                        timeout=10).json()
    href = answer["objects"][0]["actions"]["upload"]["href"]
    assert httpx.put(href, content=data, timeout=30).status_code == 200
    signature = href.split("signature=")[1].split("&")[0]
    log = (server.data_dir.parent / "serve.log").read_text()
    assert "signature=***" in log and signature not in log
