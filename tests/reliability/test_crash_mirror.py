"""SIGKILL a mirroring API server while it fetches from its upstream: after a restart the client's next
download gets every file byte-exact under the upstream's commit id, a fetch claim left by the dead
process is taken over once it goes stale, and after GC with grace 0 nothing half-done is left."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download

from tests.mirror_fixtures import upstream
from tests.models import make_weights, to_safetensors
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, killed, tail
from tests.reliability.invariants import check_clean, check_committed
from tests.reliability.test_crash_api import _free_port, _serve, _stop
from tests.service.conftest import WRITE_TOKEN, RunningService
from tests.service.xet_support import xet_client_env
from workers.jobs.gc import collect_garbage

__all__ = ["upstream", "xet_client_env"]  # fixtures, used by name

REPO = "org/mirrored"
FILES = {
    "model.safetensors": to_safetensors(make_weights(11)),  # several upstream chunks, an LFS file
    "config.json": b'{"architectures": ["TinyModel"], "hidden_size": 64}\n',  # a regular file
}
MIRROR_POINTS = [
    "mirror.claimed",  # the dead process's claim must go stale before the restarted one fetches
    "mirror.mid_transfer",  # half a body in staging, never recorded
    "mirror.fetched",  # the file staged and its claim done, no commit: the restart reuses the bytes
    "mirror.in_transaction",  # the commit written, not committed
]
CLAIM_SECONDS = 2.0  # how long a dead fetcher's claim blocks the file (120 s by default)


def _mirror_env(upstream_url: str) -> dict[str, str]:
    return {"DELTAHUB_MIRROR_UPSTREAM": upstream_url, "DELTAHUB_MIRROR_UPSTREAM_TOKEN": WRITE_TOKEN,
            "DELTAHUB_MIRROR_CLAIM_SECONDS": str(CLAIM_SECONDS)}


def _pull(url: str, into: Path) -> dict[str, bytes]:
    local = Path(snapshot_download(REPO, endpoint=url, local_dir=into, etag_timeout=30))
    return {p.relative_to(local).as_posix(): p.read_bytes()
            for p in local.rglob("*") if p.is_file() and ".cache" not in p.parts}


@pytest.mark.parametrize("point", MIRROR_POINTS)
def test_mirror_killed_during_a_fetch(point: str, local_backend: Backend, upstream: RunningService,
                                      tmp_path: Path, figures: Figures) -> None:
    api = HfApi(endpoint=upstream.url, token=WRITE_TOKEN)
    api.create_repo(REPO)
    for path, data in FILES.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=REPO)
    commit = api.model_info(REPO).sha
    port, log = _free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    env = _mirror_env(upstream.url)
    server = _serve(local_backend, port, log, crash_at=point, **env)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises when its server dies
            _pull(url, tmp_path / "first")
        assert killed(server.wait(timeout=60)), f"the server did not die at {point}:\n{tail(log)}"
        server = _serve(local_backend, port, log, **env)
        pulled = _pull(url, tmp_path / "again")  # the user runs the download again
        assert {p: pulled[p] for p in FILES} == FILES
        assert HfApi(endpoint=url).model_info(REPO).sha == commit
    finally:
        _stop(server)

    hub = local_backend.restart()
    assert hub.resolve(REPO, "main").oid == commit
    readback = check_committed(hub, {hashlib.sha256(d).hexdigest(): d for d in FILES.values()})
    assert readback.problems == []
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    figures.survived(point, readback.bytes_checked, readback.bytes_lost)
