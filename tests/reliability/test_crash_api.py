"""SIGKILL the API server (with its embedded worker) while the unmodified client pushes a model.

The server runs in a subprocess (`driver serve`); the client pushes from a thread. When the server
dies, a new one starts on the same port and data; the client either got through on its own retries
or pushes again. Afterwards the model downloads byte-exact over HTTP, and after the worker's restart
and GC with grace 0 nothing half-done is left: the interrupted upload was completed or is gone.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, snapshot_download

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from tests.reliability import scenario
from tests.reliability.driver import API_TOKEN
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, killed, start_driver, tail
from tests.reliability.invariants import check_clean, check_committed
from workers.jobs.gc import collect_garbage

REPO = "alice/pushed"
API_POINTS = [
    "api.lfs_put_received",  # the LFS object is held, the client never hears so
    "api.commit_parsed",  # inline files staged, no commit
    "api.commit_done",  # committed, the client never hears so
    "upload.mid_stream:2",  # mid-way through the LFS PUT body
    "commit.in_transaction",
    "ingest.mid_encode:5",  # the embedded worker, after the client was told the commit succeeded
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(backend: Backend, port: int, log: Path, crash_at: str | None = None,
           **env: str) -> subprocess.Popen[bytes]:
    process = start_driver(backend, "serve", str(port), crash_at=crash_at, log=log, **env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the server did not start:\n{tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _folder(root: Path) -> dict[str, bytes]:
    files = {**scenario.models()["org/base"], "config.json": b'{"model_type": "toy"}'}
    for path, data in files.items():
        (root / path).write_bytes(data)
    return files


@pytest.mark.parametrize("point", API_POINTS)
def test_api_killed_during_a_push(point: str, local_backend: Backend, tmp_path: Path, lfs_client: None,
                                  figures: Figures) -> None:
    # The points name the LFS path (batch, PUT, commit), so the client pushes through LFS.
    (tmp_path / "src").mkdir()
    files = _folder(tmp_path / "src")
    held = {".gitattributes": MODEL_GITATTRIBUTES, **files}  # with the initial commit's
    port, log = _free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    api = HfApi(endpoint=url, token=API_TOKEN)
    server = _serve(local_backend, port, log, crash_at=point)
    try:
        api.create_repo(REPO)
        outcome: list[BaseException | None] = []

        def push() -> None:
            try:
                api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)
                outcome.append(None)
            except Exception as exc:  # the server died under it: the client sees a connection error
                outcome.append(exc)

        client = threading.Thread(target=push)
        client.start()
        assert killed(server.wait(timeout=60)), f"the server did not die at {point}:\n{tail(log)}"
        server = _serve(local_backend, port, log)
        client.join(timeout=120)
        assert outcome, "the client hung"
        if outcome[0] is not None:
            api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)  # the user retries
        local = Path(snapshot_download(REPO, endpoint=url, token=API_TOKEN, cache_dir=tmp_path / "pull"))
        assert {p.name: p.read_bytes() for p in local.iterdir()} == held
    finally:
        _stop(server)

    hub = local_backend.restart()
    readback = check_committed(hub, {scenario.sha256(d): d for d in held.values()})
    assert readback.problems == []
    head = hub.resolve(REPO, "main")
    assert {e.path: e.file.sha256 for e in hub.list_tree(REPO, head.oid)} == {
        path: scenario.sha256(data) for path, data in held.items()
    }
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    figures.survived(point, readback.bytes_checked, readback.bytes_lost)
