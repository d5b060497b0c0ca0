"""Damaged data is repaired by pushing it again (issue 12, part 3, defect 5).

A byte flipped in a stored frame: `deltahub admin verify` names the file and the file delta-coded
against it, and records them damaged; reads still fail loudly; the same push with the unmodified
huggingface_hub client (Xet and LFS) is asked for the bytes and sends them, ingest re-encodes the damaged
tensors, and both files then download byte-exact and verify clean.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import huggingface_hub.constants as hf_constants
import pytest
from huggingface_hub import HfApi, hf_hub_download
from sqlalchemy import func, select

from storage.app.hub import Hub
from storage.catalog.models import (
    DamagedFile,
    DamagedTensor,
    FileObject,
    FileSegment,
    Frame,
    Tensor,
    XetDedupChunk,
    XetXorbSpan,
)
from storage.settings import load_settings
from tests.models import finetune, make_weights, to_safetensors
from tests.reliability.figures import Figures
from tests.reliability.harness import REPO_ROOT
from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service
from workers.jobs.verify import verify

BASE, CHILD, BYSTANDER = "alice/base", "alice/child", "alice/bystander"
SETTINGS: dict[str, object] = {"frame_bytes": 16 << 10, "pack_target_bytes": 64 << 10}


@pytest.fixture(params=["xet", "lfs"])
def transport(request: pytest.FixtureRequest, hf_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Once per large-file path of the client: Xet (its default) and LFS (Xet switched off)."""
    if request.param == "lfs":
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    return str(request.param)


@contextmanager
def serving(tmp_path: Path) -> Iterator[RunningService]:
    """A service over the hub in tmp_path/hub, with its embedded ingest; each start is a fresh process's
    view (no decoded frame cached from before)."""
    services = start_service(tmp_path, TEST_OPTIONS, ingest=True, settings=SETTINGS)
    try:
        yield next(services)
    finally:
        next(services, None)


def push(service: RunningService, repo_id: str, data: bytes) -> None:
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo_id)
    assert service.hub.queue is not None
    service.hub.queue.wait(timeout=120)


def admin_verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "admin", "verify", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
    )


def damage_a_base_frame(service: RunningService, base_sha: str) -> str:
    """Flip a byte in the payload of a frame of a base tensor that a child tensor is delta-coded against.
    Returns that tensor's id."""
    hub = service.hub
    with hub.session() as s:
        mine = select(FileSegment.tensor_id).where(FileSegment.file_sha256 == base_sha)
        bases = set(s.scalars(select(Tensor.base_tensor_id).where(Tensor.base_tensor_id.in_(mine))))
        assert bases, "the child is delta-coded against none of the base's tensors"
        tensor_id, key, offset, length = s.execute(
            select(Frame.tensor_id, Frame.object_key, Frame.object_offset, Frame.object_length)
            .where(Frame.tensor_id.in_(bases)).order_by(Frame.object_length.desc(), Frame.tensor_id).limit(1)
        ).one()
    blob = bytearray(hub.store.get(key))
    blob[offset + length - 7] ^= 0x40  # in the payload, past the frame header
    hub.store.put(key, bytes(blob))
    return tensor_id


def fresh_hub(tmp_path: Path) -> Hub:
    return Hub.from_settings(load_settings(data_dir=tmp_path / "hub", **SETTINGS))  # type: ignore[arg-type]


def base_chunks(service: RunningService, base_sha: str) -> list[str]:
    """Chunk hashes the global dedup query can find in xorbs that only the base file holds (Xet)."""
    with service.hub.session() as s:
        xorbs = set(s.scalars(select(XetXorbSpan.xorb_hash).where(XetXorbSpan.file_sha256 == base_sha)))
        others = set(s.scalars(select(XetXorbSpan.xorb_hash).where(XetXorbSpan.file_sha256 != base_sha)))
        return list(s.scalars(select(XetDedupChunk.chunk_hash).where(XetDedupChunk.xorb_hash.in_(xorbs - others))))


def stream(url: str) -> tuple[int, bytes, bool]:
    """(status, bytes received, whether the body arrived complete)."""
    received = bytearray()
    try:
        with httpx.stream("GET", url, timeout=60) as response:
            for chunk in response.iter_bytes():
                received += chunk
        return response.status_code, bytes(received), True
    except httpx.HTTPError:
        return 200, bytes(received), False


def download(url: str, repo_id: str, cache: Path) -> bytes:
    return Path(hf_hub_download(repo_id, "model.safetensors", endpoint=url, cache_dir=cache)).read_bytes()


def test_a_damaged_file_is_repaired_by_pushing_it_again(transport: str, tmp_path: Path, figures: Figures) -> None:
    base = to_safetensors(make_weights(51), "BF16")
    child = to_safetensors(finetune(make_weights(51), 52), "BF16")
    bystander = to_safetensors(make_weights(53), "BF16")
    base_sha, child_sha = hashlib.sha256(base).hexdigest(), hashlib.sha256(child).hexdigest()
    with serving(tmp_path) as service:
        for repo_id, data in ((BASE, base), (CHILD, child), (BYSTANDER, bystander)):
            push(service, repo_id, data)
        with service.hub.session() as s:
            assert s.get(FileObject, child_sha).base_sha256 == base_sha  # type: ignore[union-attr]
        offered = base_chunks(service, base_sha)
        assert (transport == "lfs") or (offered and all(service.hub.xet.dedup_answer(c) for c in offered))
        damaged_tensor = damage_a_base_frame(service, base_sha)

    found = admin_verify(tmp_path / "hub")
    assert found.returncode != 0
    assert BASE in found.stdout and CHILD in found.stdout and BYSTANDER not in found.stdout, found.stdout
    hub = fresh_hub(tmp_path)
    try:
        report = verify(hub)
    finally:
        hub.engine.dispose()
    problems = {p.sha256: p for p in report.problems}
    assert set(problems) == {base_sha, child_sha}
    assert problems[base_sha].locations == ((BASE, "model.safetensors"),)
    assert problems[base_sha].repair.startswith(f"push {BASE}/model.safetensors again")
    # The child is damaged through its base, and pushing the base repairs it too: verify says so.
    assert problems[child_sha].locations == ((CHILD, "model.safetensors"),)
    assert f"delta-coded against damaged data of {BASE}/model.safetensors" in problems[child_sha].repair

    with serving(tmp_path) as service:
        with service.hub.session() as s:
            assert set(s.scalars(select(DamagedFile.sha256))) == {base_sha, child_sha}
            assert damaged_tensor in set(s.scalars(select(DamagedTensor.tensor_id)))
        # Before the repair, reads fail loudly: never a complete answer with wrong bytes.
        for repo_id, data in ((BASE, base), (CHILD, child)):
            status, body, complete = stream(f"{service.url}/{repo_id}/resolve/main/model.safetensors")
            assert not (status == 200 and complete) and body == data[: len(body)], repo_id
            with pytest.raises(Exception):  # noqa: B017 (whatever the client raises, it must not succeed)
                download(service.url, repo_id, tmp_path / "before")
        cached = [p for p in (tmp_path / "before").rglob("*") if p.is_file() and p.stat().st_size > 1000]
        assert all(p.read_bytes() in (base, child) for p in cached)
        # The LFS batch no longer says "held" for the damaged file.
        batch = service.http.post(
            f"/{BASE}.git/info/lfs/objects/batch", headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            json={"operation": "upload", "objects": [{"oid": base_sha, "size": len(base)}]},
        ).json()
        assert "upload" in batch["objects"][0]["actions"]

        # Xet's global dedup no longer offers the xorbs whose chunks only the damaged file holds.
        assert not any(service.hub.xet.dedup_answer(c) for c in offered)

        before = service.counters()
        push(service, BASE, base)  # the same bytes, the same path: the operator's repair
        after = service.counters()
        if transport == "lfs":
            assert after["lfs_put_requests"] == before["lfs_put_requests"] + 1
        else:
            assert after["xet_files_staged"] == before["xet_files_staged"] + 1
            assert after["xet_xorb_bytes"] > before["xet_xorb_bytes"]
            assert after["xet_xorbs_already_held"] == before["xet_xorbs_already_held"]  # each was taken
        with service.hub.session() as s:
            assert s.scalar(select(func.count()).select_from(DamagedFile)) == 0
            assert s.scalar(select(func.count()).select_from(DamagedTensor)) == 0
            assert s.get(FileObject, base_sha).staging_key is None  # type: ignore[union-attr]

    with serving(tmp_path) as service:
        assert download(service.url, BASE, tmp_path / "after") == base
        assert download(service.url, CHILD, tmp_path / "after") == child
        assert httpx.get(f"{service.url}/{BYSTANDER}/resolve/main/model.safetensors").content == bystander
    clean = admin_verify(tmp_path / "hub")
    assert clean.returncode == 0, clean.stdout
    figures.add(bad_inputs=1)
