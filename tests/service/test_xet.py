"""Uploads through the Xet protocol: the real huggingface_hub + hf_xet client, nothing switched off,
against a real embedded server; then what a hostile client could send instead."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from sqlalchemy import func, select

from storage.catalog.models import XetXorb, XetXorbSpan
from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService
from tests.service.xet_support import AUTH, CORPUS, file_state, new_repo, xet_client_env, xet_service

__all__ = ["xet_client_env", "xet_service"]  # fixtures, used by name


def test_token_routes_answer_as_the_hub_does(xet_service: RunningService) -> None:
    api = HfApi(endpoint=xet_service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    got = xet_service.http.get(f"/api/models/{repo_id}/xet-write-token/main", headers=AUTH)
    assert got.status_code == 200, got.text
    body = got.json()
    assert set(body) == {"accessToken", "exp", "casUrl"}
    assert body["casUrl"] == f"{xet_service.url}/api/v1/xet/models/{repo_id}"
    assert got.headers["x-xet-access-token"] == body["accessToken"]
    assert got.headers["x-xet-cas-url"] == body["casUrl"]
    assert int(got.headers["x-xet-token-expiration"]) == body["exp"]
    assert WRITE_TOKEN not in body["accessToken"]
    # Authorised like the write routes: a token that may write, on a repository that exists.
    read_only = xet_service.http.get(
        f"/api/models/{repo_id}/xet-write-token/main", headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert read_only.status_code == 403 and "read-only" in read_only.json()["error"]
    assert xet_service.http.get(f"/api/models/{repo_id}/xet-write-token/main").status_code == 401
    missing = xet_service.http.get("/api/models/alice/nothing/xet-write-token/main", headers=AUTH)
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "RepoNotFound"
    # Read tokens: like the read routes (public repositories need no token; private ones answer 404).
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo_id)
    assert xet_service.http.get(f"/api/models/{repo_id}/xet-read-token/main").status_code == 200
    api.update_repo_settings(repo_id, private=True)
    hidden = xet_service.http.get(f"/api/models/{repo_id}/xet-read-token/main")
    assert hidden.status_code == 404 and hidden.headers["x-error-code"] == "RepoNotFound"
    assert xet_service.http.get(f"/api/models/{repo_id}/xet-read-token/main", headers=AUTH).status_code == 200


def test_upload_file_goes_through_xet_and_is_stored_like_lfs(xet_service: RunningService, tmp_path: Path) -> None:
    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    data = os.urandom(3 << 20) + bytes(1 << 20)  # a few MB: random, then a run that compresses
    sha = hashlib.sha256(data).hexdigest()
    api.upload_file(path_or_fileobj=data, path_in_repo="weights.bin", repo_id=repo_id)

    sent = service.counters()
    assert sent["xet_shards"] >= 1 and sent["xet_files_staged"] == 1
    assert sent["xet_xorb_bytes"] > 0 and sent["lfs_put_requests"] == 0
    path = hf_hub_download(repo_id, "weights.bin", endpoint=service.url, cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == data  # served from staging
    service.hub.queue.wait(timeout=120)
    assert file_state(service, sha) == "stored"
    path = hf_hub_download(repo_id, "weights.bin", endpoint=service.url, cache_dir=tmp_path / "c2")
    assert Path(path).read_bytes() == data  # rebuilt from what ingest stored

    # The same bytes again, under another path: no xorb travels (the client finds every chunk held).
    api.upload_file(path_or_fileobj=data, path_in_repo="copy.bin", repo_id=repo_id)
    again = service.counters()
    assert again["xet_xorb_bytes"] == sent["xet_xorb_bytes"]
    assert again["xet_files_staged"] == 1
    assert {f.path for f in api.list_repo_tree(repo_id)} == {".gitattributes", "weights.bin", "copy.bin"}
    path = hf_hub_download(repo_id, "copy.bin", endpoint=service.url, cache_dir=tmp_path / "c3")
    assert Path(path).read_bytes() == data


def test_the_same_content_pushed_from_a_fresh_client_travels_as_no_xorb(
    xet_service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second machine (an empty Xet cache) learns from the global dedup query what the hub holds."""
    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    data = os.urandom(2 << 20)
    api.upload_file(path_or_fileobj=data, path_in_repo="a.bin", repo_id=repo_id)
    service.hub.queue.wait(timeout=120)
    before = service.counters()
    other = new_repo(api)  # another CAS URL: the client's shard cache for the first one is not used
    api.upload_file(path_or_fileobj=data, path_in_repo="a.bin", repo_id=other)
    after = service.counters()
    assert after["xet_dedup_hits"] > before["xet_dedup_hits"]
    assert after["xet_xorb_bytes"] == before["xet_xorb_bytes"]
    path = hf_hub_download(other, "a.bin", endpoint=service.url, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == data


def test_a_file_that_extends_a_held_one_sends_only_its_new_chunks(
    xet_service: RunningService, tmp_path: Path
) -> None:
    """The held part is read back from the stored file (the xorb's own copy is gone by then)."""
    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    first, second = new_repo(api), new_repo(api)
    base = os.urandom(4 << 20)
    api.upload_file(path_or_fileobj=base, path_in_repo="a.bin", repo_id=first)
    service.hub.queue.wait(timeout=120)
    assert file_state(service, hashlib.sha256(base).hexdigest()) == "stored"
    before = service.counters()
    extended = base + os.urandom(1 << 20)
    api.upload_file(path_or_fileobj=extended, path_in_repo="b.bin", repo_id=second)
    after = service.counters()
    new_bytes = after["xet_xorb_bytes"] - before["xet_xorb_bytes"]
    assert 0 < new_bytes < (2 << 20)  # about the 1 MiB that is new (chunk boundaries shift a little)
    assert after["xet_files_staged"] == before["xet_files_staged"] + 1
    path = hf_hub_download(second, "b.bin", endpoint=service.url, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == extended


def test_a_file_spanning_several_xorbs(xet_service: RunningService, tmp_path: Path) -> None:
    """Past 64 MiB a file's chunks go in several xorbs: its terms are rebuilt in order, from each."""
    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(9):
            out.write(os.urandom(10 << 20))
    api.upload_file(path_or_fileobj=str(source), path_in_repo="big.bin", repo_id=repo_id)
    assert service.counters()["xet_xorbs_received"] >= 2
    with service.hub.session() as s:
        assert s.scalar(select(func.count()).select_from(XetXorbSpan)) >= 2
        assert s.scalar(select(func.count()).where(XetXorb.raw_key.is_not(None))) == 0
    path = hf_hub_download(repo_id, "big.bin", endpoint=service.url, cache_dir=tmp_path / "c")
    with open(path, "rb") as got, source.open("rb") as want:
        assert hashlib.file_digest(got, "sha256").digest() == hashlib.file_digest(want, "sha256").digest()


def test_two_clients_pushing_the_same_new_file_at_once(xet_service: RunningService, tmp_path: Path) -> None:
    """Both succeed: the races (same xorb, same file staged twice, a copy dropped under a reader) settle."""
    from concurrent.futures import ThreadPoolExecutor

    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    repos = [new_repo(api) for _ in range(3)]
    data = os.urandom(6 << 20)
    with ThreadPoolExecutor(len(repos)) as pool:
        list(pool.map(lambda repo: api.upload_file(path_or_fileobj=data, path_in_repo="same.bin", repo_id=repo),
                      repos))
    for number, repo in enumerate(repos):
        path = hf_hub_download(repo, "same.bin", endpoint=service.url, cache_dir=tmp_path / f"c{number}")
        assert Path(path).read_bytes() == data
    service.hub.queue.wait(timeout=120)
    assert file_state(service, hashlib.sha256(data).hexdigest()) == "stored"
    with service.hub.session() as s:
        assert s.scalar(select(func.count()).where(XetXorb.raw_key.is_not(None))) == 0


def test_a_real_model_folder_round_trips(xet_service: RunningService, tmp_path: Path) -> None:
    model = CORPUS / "minilm-bf16" / "sre"
    if not (model / "model.safetensors").exists():
        pytest.skip(f"no dev corpus at {CORPUS}")
    service = xet_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    api.upload_folder(folder_path=model, repo_id=repo_id)
    weights = (model / "model.safetensors").read_bytes()
    sha = hashlib.sha256(weights).hexdigest()
    assert service.counters()["xet_files_staged"] >= 1
    service.hub.queue.wait(timeout=300)
    assert file_state(service, sha) == "stored"
    assert service.hub.file_info(sha).kind == "safetensors"
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        path = hf_hub_download(repo_id, name, endpoint=service.url, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == (model / name).read_bytes(), name
    before = service.counters()["xet_xorb_bytes"]
    api.upload_folder(folder_path=model, repo_id=repo_id, commit_message="again")
    assert service.counters()["xet_xorb_bytes"] == before


def test_telemetry_is_accepted_and_dropped(xet_service: RunningService) -> None:
    assert xet_service.http.post("/v1/telemetry", json={"event": "upload"}).status_code == 204
    too_big = xet_service.http.post("/v1/telemetry", content=bytes((1 << 20) + 1))
    assert too_big.status_code == 413
