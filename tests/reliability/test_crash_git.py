"""SIGKILL the API server while the real git pushes: after a restart the user pushes again, the clone
is byte-exact with the client's commit id, and after GC with grace 0 nothing half-done is left."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.reliability import scenario
from tests.reliability.driver import API_TOKEN
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, killed, tail
from tests.reliability.invariants import check_clean, check_committed
from tests.reliability.test_crash_api import _free_port, _serve, _stop
from tests.service.git_support import Git
from workers.jobs.gc import collect_garbage

REPO = "alice/git-pushed"
GIT_POINTS = [
    "git.push_staged",  # the pack's small files staged, no commit
    "git.push_in_transaction",  # the commits written, not committed
    "api.lfs_put_received",  # git-lfs's upload held, the client never hears so
]


@pytest.mark.parametrize("point", GIT_POINTS)
def test_api_killed_during_a_git_push(point: str, local_backend: Backend, tmp_path: Path, figures: Figures) -> None:
    files = {**scenario.models()["org/base"], "config.json": b'{"model_type": "toy"}', "notes.txt": b"small\n"}
    port, log = _free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    server = _serve(local_backend, port, log, crash_at=point)
    git = Git(tmp_path / "home", url, API_TOKEN)
    try:
        HfApi(endpoint=url, token=API_TOKEN).create_repo(REPO)
        git.run("clone", f"{url}/{REPO}", "work", cwd=tmp_path)
        work = tmp_path / "work"
        for path, data in files.items():
            (work / path).write_bytes(data)
        git.run("add", ".", cwd=work)
        git.run("commit", "-m", "pushed", cwd=work)
        first = git.run("push", "origin", "main", cwd=work, check=False)
        assert first.returncode != 0, first.stderr
        assert killed(server.wait(timeout=60)), f"the server did not die at {point}:\n{tail(log)}"
        server = _serve(local_backend, port, log)
        git.run("push", "origin", "main", cwd=work)  # the user pushes again
        head = git.out("rev-parse", "HEAD", cwd=work)
        git.run("clone", f"{url}/{REPO}", "again", cwd=tmp_path)
        assert git.out("rev-parse", "HEAD", cwd=tmp_path / "again") == head
        for path, data in files.items():
            assert (tmp_path / "again" / path).read_bytes() == data
    finally:
        _stop(server)

    hub = local_backend.restart()
    assert hub.resolve(REPO, "main").oid == head
    readback = check_committed(hub, {scenario.sha256(d): d for d in files.values()})
    assert readback.problems == []
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    figures.survived(point, readback.bytes_checked, readback.bytes_lost)
