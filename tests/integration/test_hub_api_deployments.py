"""The Hub API calls beyond push and pull, against both deployments, with the unmodified client (Xet on):
whoami, branches and tags, revision pinning, listings and search, dataset repositories, move_repo and
the old name's redirect."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RevisionNotFoundError

from tests.integration.test_deployments import Deployment, distributed, embedded

__all__ = ["distributed", "embedded"]  # fixtures, used by name


@pytest.fixture(params=["embedded", "distributed"])
def deployment(request: pytest.FixtureRequest, hf_client_env: Path) -> Deployment:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_refs_listings_datasets_whoami_and_moves(deployment: Deployment, tmp_path: Path) -> None:
    api = HfApi(endpoint=deployment.url, token=deployment.token)
    me = api.whoami()
    owner = me["name"]
    assert me["type"] == "user" and me["auth"]["accessToken"]["role"] == "write"
    weights, weights2 = os.urandom(3 << 20), os.urandom(2 << 20)  # LFS-sized: they travel by Xet

    # Branches and tags, and revision= pinning on each.
    repo = f"{owner}/lifecycle"
    api.create_repo(repo)
    first = api.create_commit(repo, [CommitOperationAdd("w.bin", weights), CommitOperationAdd("a.txt", b"1")],
                              commit_message="first")
    api.create_tag(repo, tag="v1", tag_message="first release")
    api.create_branch(repo, branch="dev")
    api.upload_file(path_or_fileobj=weights2, path_in_repo="w.bin", repo_id=repo, revision="dev")
    refs = api.list_repo_refs(repo)
    assert {b.name for b in refs.branches} == {"main", "dev"} and [t.name for t in refs.tags] == ["v1"]
    assert refs.tags[0].target_commit == first.oid
    cache = tmp_path / "cache"
    assert Path(hf_hub_download(repo, "w.bin", revision="v1", endpoint=deployment.url,
                                cache_dir=cache)).read_bytes() == weights
    assert Path(hf_hub_download(repo, "w.bin", revision="dev", endpoint=deployment.url,
                                cache_dir=cache)).read_bytes() == weights2
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo, revision="nope")
    api.delete_branch(repo, branch="dev")
    api.delete_tag(repo, tag="v1")
    assert [b.name for b in api.list_repo_refs(repo).branches] == ["main"]

    # A dataset repository beside a model of the same name.
    data = b"text,label\n" + b"".join(b"row %d,%d\n" % (i, i % 2) for i in range(2000))
    api.create_repo(repo, repo_type="dataset")
    api.create_commit(repo, [CommitOperationAdd("train.csv", data), CommitOperationAdd("blob.bin", weights)],
                      commit_message="data", repo_type="dataset")
    snap = Path(snapshot_download(repo, repo_type="dataset", endpoint=deployment.url, cache_dir=tmp_path / "ds"))
    assert (snap / "train.csv").read_bytes() == data and (snap / "blob.bin").read_bytes() == weights
    assert api.dataset_info(repo).id == repo and api.model_info(repo).sha != api.dataset_info(repo).sha

    # Listings and search.
    api.create_repo(f"{owner}/search-me")
    assert {m.id for m in api.list_models(author=owner)} >= {repo, f"{owner}/search-me"}
    assert [m.id for m in api.list_models(search="search-me")] == [f"{owner}/search-me"]
    assert [d.id for d in api.list_datasets(author=owner)] == [repo]

    # move_repo, then the old name redirects to the new one.
    api.move_repo(repo, f"{owner}/moved")
    assert api.model_info(repo).id == f"{owner}/moved"
    got = hf_hub_download(repo, "w.bin", endpoint=deployment.url, cache_dir=tmp_path / "after-move")
    assert hashlib.sha256(Path(got).read_bytes()).digest() == hashlib.sha256(weights).digest()
    moved = Path(snapshot_download(repo, endpoint=deployment.url, cache_dir=tmp_path / "snap-after-move"))
    assert (moved / "w.bin").read_bytes() == weights and (moved / "a.txt").read_bytes() == b"1"
    assert api.dataset_info(repo).id == repo  # the dataset of that name was not moved
    api.create_repo(repo)  # a new repository takes the old name back
    assert api.model_info(repo).id == repo and api.list_repo_files(repo) == [".gitattributes"]
    # Every LFS-sized file above went through Xet: nothing was switched off.
    sent = httpx.get(f"{deployment.url}/api/v1/stats", timeout=10).json()["transfers"]
    assert sent["xet_files_staged"] >= 2 and sent["lfs_put_requests"] == 0  # blob.bin is w.bin: held
