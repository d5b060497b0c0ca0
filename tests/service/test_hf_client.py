"""The unmodified huggingface_hub client against a real deltahub server: push, pull, list, errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
    RepoFile,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import save

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService

REPO = "alice/tiny-model"


def _model_folder(root: Path, *, big_bytes: int = 5 * 1024 * 1024, seed: int = 0) -> dict[str, bytes]:
    """A folder like a model: small text files (inline) and one large weight file (LFS)."""
    files = {
        "config.json": b'{"model_type": "toy", "hidden_size": 8}',
        "README.md": b"---\nlicense: mit\n---\n# toy\n",
        "tokenizer/vocab.txt": b"a\nb\nc\n",
        "weights/model.bin": np.random.default_rng(seed).bytes(big_bytes),
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


def large_uploads(counters: dict[str, int], transport: str) -> int:
    """Files the client sent by the large-file path of `transport` ("xet" or "lfs")."""
    return counters["xet_files_staged"] if transport == "xet" else counters["lfs_put_requests"]


def test_create_repo_conflict_and_exist_ok(api: HfApi, service: RunningService) -> None:
    url = api.create_repo(REPO)
    assert url.repo_id == REPO
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO


def test_upload_folder_then_download_by_branch_and_commit(
    transport: str, api: HfApi, service: RunningService, tmp_path: Path
) -> None:
    api.create_repo(REPO)
    files = _model_folder(tmp_path / "v1")
    first = api.upload_folder(folder_path=tmp_path / "v1", repo_id=REPO, commit_message="v1")
    counters = service.counters()
    assert large_uploads(counters, transport) == 1  # only the large file went by Xet or LFS
    assert large_uploads(counters, "lfs" if transport == "xet" else "xet") == 0
    assert counters["inline_files"] == 3

    changed = b'{"model_type": "toy", "hidden_size": 16}'
    second = api.upload_file(path_or_fileobj=changed, path_in_repo="config.json", repo_id=REPO)
    assert second.oid != first.oid

    cache = tmp_path / "cache"
    by_branch = hf_hub_download(REPO, "config.json", endpoint=service.url, cache_dir=cache)
    assert Path(by_branch).read_bytes() == changed
    by_commit = hf_hub_download(REPO, "config.json", revision=first.oid, endpoint=service.url, cache_dir=cache)
    assert Path(by_commit).read_bytes() == files["config.json"]
    weights = hf_hub_download(REPO, "weights/model.bin", endpoint=service.url, cache_dir=cache)
    assert Path(weights).read_bytes() == files["weights/model.bin"]
    # The cache names blobs by ETag: deltahub's ETag is the SHA-256 of the content.
    assert Path(weights).resolve().name == hashlib.sha256(files["weights/model.bin"]).hexdigest()


def test_snapshot_download_and_listings(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    files = _model_folder(tmp_path / "src", big_bytes=64 * 1024)
    api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)

    # Every repository starts with the Hub's .gitattributes (its initial commit).
    files = {".gitattributes": MODEL_GITATTRIBUTES, **files}
    local = Path(snapshot_download(REPO, endpoint=service.url, cache_dir=tmp_path / "cache"))
    got = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert got == files

    # Page size 3 with 5 files and 2 directories: the client must follow the Link header.
    assert sorted(api.list_repo_files(REPO)) == sorted(files)
    tree = list(api.list_repo_tree(REPO, recursive=True))
    assert {t.path for t in tree} == set(files) | {"tokenizer", "weights"}
    top = {t.path for t in api.list_repo_tree(REPO)}
    assert top == {".gitattributes", "config.json", "README.md", "tokenizer", "weights"}
    assert [t.path for t in api.list_repo_tree(REPO, path_in_repo="weights")] == ["weights/model.bin"]

    info = api.model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == api.list_repo_commits(REPO)[0].commit_id
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {path: len(data) for path, data in files.items()}
    lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs is not None}
    assert lfs == {"weights/model.bin": hashlib.sha256(files["weights/model.bin"]).hexdigest()}
    # The rest git holds as blobs of their bytes, as a clone gets them: listed with that blob's id and
    # no `lfs`, as the Hub lists them, in the tree, in paths-info and in model_info alike.
    blob_ids = {s.rfilename: s.blob_id for s in info.siblings if s.lfs is None}
    assert blob_ids == {path: git_blob_id(data) for path, data in files.items() if path != "weights/model.bin"}
    listed = {t.path: (t.blob_id, t.lfs) for t in tree if isinstance(t, RepoFile)}
    assert listed["config.json"] == (git_blob_id(files["config.json"]), None)
    assert listed["weights/model.bin"][1] is not None and listed["weights/model.bin"][1].size == 64 * 1024
    described = api.get_paths_info(REPO, ["README.md", "weights/model.bin"])
    assert [(d.path, d.lfs is None) for d in described] == [("README.md", True), ("weights/model.bin", False)]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def test_reupload_of_known_large_file_transfers_nothing(transport: str, api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    api.create_repo("alice/copy")
    big = os.urandom(3 * 1024 * 1024)
    api.upload_file(path_or_fileobj=big, path_in_repo="model.bin", repo_id=REPO)
    before = service.counters()
    if transport == "lfs":
        assert before["lfs_put_bytes"] == len(big)
    else:  # random bytes: LZ4 gains nothing, the xorb is the file plus its chunk headers
        assert len(big) <= before["xet_xorb_bytes"] < len(big) * 1.01

    api.upload_file(path_or_fileobj=big, path_in_repo="renamed.bin", repo_id=REPO)
    api.upload_file(path_or_fileobj=big, path_in_repo="model.bin", repo_id="alice/copy")
    after = service.counters()
    assert after["lfs_put_requests"] == before["lfs_put_requests"]
    assert after["lfs_put_bytes"] == before["lfs_put_bytes"]
    assert after["xet_xorb_bytes"] == before["xet_xorb_bytes"]  # global dedup: no xorb sent again
    if transport == "lfs":
        assert after["lfs_objects_already_held"] == before["lfs_objects_already_held"] + 2
    assert set(api.list_repo_files("alice/copy")) == {".gitattributes", "model.bin"}


def test_paths_info_and_copies_by_reference(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    files = _model_folder(tmp_path / "src", big_bytes=20_000)
    api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)
    described = api.get_paths_info(REPO, ["weights/model.bin", "tokenizer", "missing.txt"])
    assert [(type(d).__name__, d.path) for d in described] == [
        ("RepoFile", "weights/model.bin"),
        ("RepoFolder", "tokenizer"),
    ]
    before = service.counters()
    api.create_commit(
        REPO,
        [CommitOperationCopy("weights/model.bin", "weights/copy.bin"), CommitOperationCopy("config.json", "c2.json")],
        commit_message="copy",
    )
    after = service.counters()
    # The LFS file is copied by its oid; a regular file the client downloads and sends inline again, as
    # it does on the Hub (paths-info lists it without `lfs`).
    assert after["lfs_put_bytes"] == before["lfs_put_bytes"] and after["inline_files"] == before["inline_files"] + 1
    copy = hf_hub_download(REPO, "weights/copy.bin", endpoint=service.url, cache_dir=tmp_path / "cache")
    assert Path(copy).read_bytes() == files["weights/model.bin"]


def test_unchanged_files_make_no_commit(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    _model_folder(tmp_path / "src", big_bytes=10_000)
    first = api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)
    again = api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO)
    # Preupload returned the remote oids, the client dropped every file, and made no commit.
    assert again.oid == first.oid
    assert [c.title for c in api.list_repo_commits(REPO)][1:] == ["initial commit"]


def test_commits_on_a_branch_with_a_slash(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"main", path_in_repo="which.txt", repo_id=REPO)
    branch = "feature/longer-context"
    # As on the Hub, a commit does not create a branch: create_branch does (from main's head).
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"one", path_in_repo="which.txt", repo_id=REPO, revision=branch)
    api.create_branch(REPO, branch=branch)
    one = api.upload_file(path_or_fileobj=b"one", path_in_repo="which.txt", repo_id=REPO, revision=branch)
    api.create_commit(
        REPO,
        [
            CommitOperationAdd("extra.bin", os.urandom(10_000)),
            CommitOperationDelete("which.txt"),
        ],
        commit_message="two",
        revision=branch,
        parent_commit=one.oid,
    )
    history = api.list_repo_commits(REPO, revision=branch)
    upload = "Upload which.txt with huggingface_hub"
    assert [c.title for c in history] == ["two", upload, upload, "initial commit"]
    assert history[1].commit_id == one.oid
    assert set(api.list_repo_files(REPO, revision=branch)) == {".gitattributes", "extra.bin"}
    refs = {r.name for r in api.list_repo_refs(REPO).branches}
    assert refs == {"main", branch}
    cache = tmp_path / "cache"
    assert (
        Path(hf_hub_download(REPO, "which.txt", revision=one.oid, endpoint=service.url, cache_dir=cache)).read_bytes()
        == b"one"
    )
    assert Path(hf_hub_download(REPO, "which.txt", endpoint=service.url, cache_dir=cache)).read_bytes() == b"main"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "which.txt", revision=branch, endpoint=service.url, cache_dir=cache)


def test_stale_parent_commit_is_refused(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id=REPO)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO, [CommitOperationAdd("b.txt", b"3")], commit_message="late", parent_commit=first.oid)
    assert err.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"4", path_in_repo="a.txt", repo_id=REPO)
    # Four commits, two per page: the client follows the Link header to the oldest.
    history = api.list_repo_commits(REPO)
    assert history[-2].commit_id == first.oid and history[-1].title == "initial commit"


def test_client_errors_name_what_is_missing(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id=REPO)
    cache = tmp_path / "cache"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/absent", "a.txt", endpoint=service.url, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "a.txt", revision="no-such-branch", endpoint=service.url, cache_dir=cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "b.txt", endpoint=service.url, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/absent")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(REPO, revision="0" * 40)
    api.delete_repo(REPO)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO)
    api.delete_repo(REPO, missing_ok=True)


def test_private_repo_is_invisible_without_a_token(service: RunningService, tmp_path: Path) -> None:
    writer = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    writer.create_repo("alice/secret", private=True)
    writer.upload_file(path_or_fileobj=b"s", path_in_repo="s.txt", repo_id="alice/secret")
    anonymous = HfApi(endpoint=service.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("alice/secret")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret", "s.txt", endpoint=service.url, token=False, cache_dir=tmp_path / "c")
    reader = HfApi(endpoint=service.url, token=READ_TOKEN)
    assert reader.model_info("alice/secret").private is True
    path = hf_hub_download("alice/secret", "s.txt", endpoint=service.url, token=READ_TOKEN, cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == b"s"

    writer.update_repo_settings("alice/secret", private=False)
    assert anonymous.model_info("alice/secret").private is False


def test_writes_need_a_write_token(service: RunningService) -> None:
    HfApi(endpoint=service.url, token=WRITE_TOKEN).create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as anonymous:
        HfApi(endpoint=service.url, token=False).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as read_only:
        HfApi(endpoint=service.url, token=READ_TOKEN).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO
        )
    assert read_only.value.response.status_code == 403
    assert HfApi(endpoint=service.url, token=READ_TOKEN).whoami()["name"] == "bob"


def test_safetensors_metadata_is_read_through_ranges(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    tensors = {
        "embed.weight": np.arange(64 * 1024, dtype=np.float32).reshape(256, 256),
        "head.bias": np.ones(16, dtype=np.float16),
    }
    data = save(tensors, metadata={"format": "pt"})
    assert len(data) > 200_000  # larger than the client's first 100 kB range
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=REPO)
    before = service.counters()["download_bytes"]

    meta = api.get_safetensors_metadata(REPO)
    described = meta.files_metadata["model.safetensors"]
    assert described.metadata == {"format": "pt"}
    assert described.tensors["embed.weight"].shape == [256, 256]
    assert described.tensors["head.bias"].dtype == "F16"
    assert service.counters()["download_bytes"] - before == 100_001  # one range, not the file


def test_large_transfers_stream_in_bounded_memory(
    lfs_client: None, api: HfApi, service: RunningService, tmp_path: Path
) -> None:
    """Neither side holds a whole file: peak traced memory stays far below the file size. (By LFS: a Xet
    xorb, up to 64 MiB, is held whole while it is checked; XORB_SLOTS bounds how many.)"""
    import tracemalloc

    size = 48 * 1024 * 1024
    source = tmp_path / "big.bin"
    with source.open("wb") as out:
        for _ in range(size // (1 << 20)):
            out.write(os.urandom(1 << 20))
    api.create_repo(REPO)
    tracemalloc.start()
    try:
        api.upload_file(path_or_fileobj=str(source), path_in_repo="big.bin", repo_id=REPO)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        with service.http.stream("GET", f"/{REPO}/resolve/main/big.bin") as response:
            for chunk in response.iter_bytes(1 << 20):
                digest.update(chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()
    assert upload_peak < size // 3, upload_peak
    assert download_peak < size // 3, download_peak
