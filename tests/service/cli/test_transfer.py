"""`deltahub push` and `deltahub pull` end to end: a real `deltahub serve` process, the CLI in another.

The server is started exactly as a user would (embedded mode, a fresh data directory, its first-start
admin token); the client runs with a private HF_HOME and no Hugging Face token.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.cli.common import human_bytes
from service.cli.download import PARTIAL_DIR
from tests.models import finetune, make_weights, to_safetensors

ROOT = Path(__file__).resolve().parents[3]
# Above the server's 1 MiB inline limit, so the model travels by LFS (where dedup before transfer acts).
LAYOUT = {"embeddings.weight": (2048, 160), "layer.0.weight": (256, 160), "norm.weight": (160,)}
# The test server's largest accepted file: small enough that a test can offer a larger (sparse) one.
MAX_UPLOAD_BYTES = 50_000_000


@dataclass
class Server:
    url: str
    token: str
    data_dir: Path
    env: dict[str, str]

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/api/v1/stats", timeout=10).json()

    def repos(self) -> set[str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        return {r["repo_id"] for r in httpx.get(f"{self.url}/api/v1/repos", headers=headers, timeout=10).json()}


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
        env={**env, "DELTAHUB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)},
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
    # The fine-tune's row counts what it adds to the hub (its exclusive bytes), not the base tensors it
    # shares: a delta-coded fine-tune never shows a negative saving.
    [row] = [line for line in pushed.stdout.splitlines() if "org/tuned " in line and "│" in line]
    _, stored, saved, saved_percent = [cell.strip() for cell in row.split("│")[2:6]]
    assert not saved.startswith("-") and not saved_percent.startswith("-") and float(saved_percent[:-1]) > 50

    pulled = deltahub("pull", "org/tuned", str(tmp_path / "out"), "--endpoint", server.url, env=server.env)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert "SHA-256 verified" in pulled.stdout
    assert_same_files(tmp_path / "out", tuned)

    report = deltahub("admin", "report", "--format", "json", "--data-dir", str(server.data_dir), env=server.env)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    [tuned_row] = [r for r in document["repositories"] if r["repo_id"] == "org/tuned"]
    assert stored == human_bytes(tuned_row["exclusive_bytes"]) and tuned_row["exclusive_bytes"] > 0
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
    weights = make_weights(7, LAYOUT)
    files = write_model(tmp_path / "tuned", finetune(weights, 8))
    common = ("--endpoint", server.url, "--token", server.token)
    pushed = deltahub("push", str(tmp_path / "tuned"), "org/declared", "--base", "org/some-base", *common,
                      env=server.env)
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    # docs/cli.md: a base the hub does not hold is kept as a hint, with a warning (a typo shows).
    assert "warning: --base org/some-base: no such repository" in pushed.stderr.replace("\n", "")
    sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    with sqlite3.connect(server.data_dir / "catalog.sqlite3") as db:
        (declared,) = db.execute("SELECT declared_base FROM file_objects WHERE sha256 = ?", (sha,)).fetchone()
    assert declared == "org/some-base"
    known = deltahub("push", str(tmp_path / "tuned"), "org/declared-2", "--base", "org/declared", *common,
                     env=server.env)
    assert known.returncode == 0 and "warning" not in known.stderr, known.stderr
    rejected = deltahub("push", str(tmp_path / "tuned"), "org/declared", "--base", "not/a/repo", *common,
                        env=server.env)
    assert rejected.returncode == 2


def test_a_bare_name_is_the_token_namespace(server: Server, tmp_path: Path) -> None:
    files = write_model(tmp_path / "model", make_weights(13, LAYOUT))
    common = ("--endpoint", server.url, "--token", server.token)
    pushed = deltahub("push", str(tmp_path / "model"), "bare-model", *common, env=server.env)
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert "to admin/bare-model@main" in pushed.stdout and "admin/bare-model" in pushed.stderr
    assert "admin/bare-model" in server.repos()
    # The same name means the same repository when pulling with the same token.
    pulled = deltahub("pull", "bare-model", str(tmp_path / "out"), *common, env=server.env)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    assert_same_files(tmp_path / "out", files)
    anonymous = deltahub("pull", "bare-model", str(tmp_path / "anon"), "--endpoint", server.url, env=server.env)
    assert anonymous.returncode == 2 and "namespace/name" in anonymous.stderr, anonymous.stderr


def test_a_failed_push_leaves_no_repository_behind(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_model(folder, make_weights(15, LAYOUT))
    common = ("--endpoint", server.url, "--token", server.token)
    # A file the server refuses only once asked (larger than its limit): the commit fails after the
    # repository was created.
    with open(folder / "huge.bin", "wb") as huge:
        huge.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: no disk space used
    refused = deltahub("push", str(folder), "org/refused", *common, env=server.env)
    assert refused.returncode == 2, refused.stderr + refused.stdout
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    assert f"outside 0..{MAX_UPLOAD_BYTES}" in refused.stderr
    assert "org/refused" not in server.repos()
    # A read-only token is refused before anything is hashed or created.
    (folder / "huge.bin").unlink()
    created = deltahub("admin", "token", "create", "reader", "--data-dir", str(server.data_dir), env=server.env)
    assert created.returncode == 0, created.stderr
    reader = created.stdout.strip().splitlines()[-1]
    read_only = deltahub("push", str(folder), "org/read-only", "--endpoint", server.url, "--token", reader,
                         env=server.env)
    assert read_only.returncode == 8 and "read-only" in read_only.stderr, read_only.stderr
    assert "hashing" not in read_only.stdout and "org/read-only" not in server.repos()


class ThrottlingProxy:
    """A TCP proxy that passes server-to-client bytes at `rate` bytes/s: a slow link, so that a pull of a
    file of a few MB is still under way when the test interrupts it."""

    def __init__(self, upstream_port: int, rate: int) -> None:
        self.upstream_port, self.rate = upstream_port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rate), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, rate: int | None) -> None:
        piece = 16 * 1024
        try:
            while data := source.recv(piece):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            # Reset both ends: the server must not wait on a response nobody reads (it would not stop).
            for end in (source, sink):
                try:
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()


def test_ctrl_c_stops_a_pull_at_once_and_the_next_pull_resumes(server: Server, tmp_path: Path) -> None:
    big = os.urandom(24 * 1024 * 1024)  # incompressible: stored and served at full size
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(big)
    common = ("--endpoint", server.url, "--token", server.token)
    assert deltahub("push", str(tmp_path / "model"), "org/slow", *common, env=server.env).returncode == 0
    out = tmp_path / "out"
    partial = out / PARTIAL_DIR / f"{hashlib.sha256(big).hexdigest()}.partial"
    proxy = ThrottlingProxy(int(server.url.rsplit(":", 1)[1]), rate=4 * 1024 * 1024)  # about 6 s for the file
    try:
        pull = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "pull", "org/slow", str(out), "--endpoint", proxy.url],
            cwd=ROOT,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As from a terminal: a shell's background job would start with SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size > 2 * 1024 * 1024):
            assert pull.poll() is None and time.monotonic() < deadline, pull.communicate()
            time.sleep(0.05)
        pull.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        stdout, stderr = pull.communicate(timeout=30)
        stopped_after = time.monotonic() - interrupted_at
    finally:
        proxy.close()
    assert pull.returncode == 130, (stdout, stderr)
    assert stopped_after < 2.5, f"took {stopped_after:.1f}s to stop"
    assert stderr.startswith("error: interrupted") and stderr.count("\n") == 1 and "Traceback" not in stderr
    kept = partial.stat().st_size
    assert 0 < kept < len(big) and not (out / "weights.bin").exists()
    before = server.stats()["transfers"]["download_bytes"]
    resumed = deltahub("pull", "org/slow", str(out), "--endpoint", server.url, env=server.env)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert (out / "weights.bin").read_bytes() == big
    assert server.stats()["transfers"]["download_bytes"] - before == len(big) - kept


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
