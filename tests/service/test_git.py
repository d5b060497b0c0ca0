"""git over smart HTTP with the real `git` and `git-lfs` clients against a real server: clone, fetch,
push, LFS both ways, and the same commit ids as the Hub API."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import huggingface_hub
import pytest

from tests.service.conftest import WRITE_TOKEN, RunningService
from tests.service.git_support import Git

pytestmark = pytest.mark.usefixtures("lfs_client")

WEIGHTS = os.urandom(50_000)  # over TEST_OPTIONS' 4 KiB: an LFS file
CONFIG = b'{"model_type": "gpt2", "n_layer": 2}\n'


@pytest.fixture
def git(tmp_path: Path, service: RunningService) -> Git:
    return Git(tmp_path / "alice", service.url, WRITE_TOKEN)


@pytest.fixture
def anonymous_git(tmp_path: Path, service: RunningService) -> Git:
    return Git(tmp_path / "anonymous", service.url, None)


def _hub_repo(api: huggingface_hub.HfApi, repo_id: str, *, private: bool = False) -> str:
    api.create_repo(repo_id, private=private)
    api.upload_file(path_or_fileobj=CONFIG, path_in_repo="config.json", repo_id=repo_id)
    return api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="weights/model.bin", repo_id=repo_id).oid


def test_clone_gives_the_hubs_files_and_commit_ids(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    head = _hub_repo(api, "alice/clone-me")
    work = tmp_path / "work"
    git.run("clone", f"{service.url}/alice/clone-me", str(work), cwd=tmp_path, env={"GIT_LFS_SKIP_SMUDGE": "1"})

    ids = [c.commit_id for c in api.list_repo_commits("alice/clone-me")]
    assert git.out("log", "--format=%H", cwd=work).split() == ids
    assert git.out("rev-parse", "HEAD", cwd=work) == head
    assert service.http.head("/alice/clone-me/resolve/main/config.json").headers["x-repo-commit"] == head
    assert git.out("symbolic-ref", "HEAD", cwd=work) == "refs/heads/main"
    assert (work / "config.json").read_bytes() == CONFIG
    pointer = (work / "weights/model.bin").read_text()
    assert f"oid sha256:{hashlib.sha256(WEIGHTS).hexdigest()}" in pointer
    assert "*.bin filter=lfs" in (work / ".gitattributes").read_text()

    git.run("lfs", "pull", cwd=work)
    assert (work / "weights/model.bin").read_bytes() == WEIGHTS
    assert git.out("status", "--porcelain", cwd=work) == ""


def test_clone_with_dot_git_and_of_a_dataset(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    api.create_repo("alice/data", repo_type="dataset")
    api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="train.parquet", repo_id="alice/data", repo_type="dataset")
    git.run("clone", f"{service.url}/datasets/alice/data.git", "data", cwd=tmp_path)
    assert (tmp_path / "data/train.parquet").read_bytes() == WEIGHTS  # smudged through the LFS download
    head = api.dataset_info("alice/data").sha
    assert git.out("rev-parse", "HEAD", cwd=tmp_path / "data") == head


def test_fetch_after_a_new_commit(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    _hub_repo(api, "alice/moving")
    git.run("clone", f"{service.url}/alice/moving", "moving", cwd=tmp_path)
    work = tmp_path / "moving"
    new = api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id="alice/moving").oid
    api.create_tag("alice/moving", tag="v1")
    git.run("pull", "--tags", cwd=work)
    assert git.out("rev-parse", "HEAD", cwd=work) == new
    assert git.out("rev-parse", "v1", cwd=work) == new
    assert (work / "README.md").read_bytes() == b"# card\n"


def test_push_a_new_model_with_lfs_and_download_it_with_huggingface_hub(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    api.create_repo("alice/pushed")
    work = tmp_path / "fresh"
    work.mkdir()
    git.run("init", cwd=work)
    git.run("remote", "add", "origin", f"{service.url}/alice/pushed", cwd=work)
    git.run("pull", "origin", "main", cwd=work)  # the repository's initial commit: .gitattributes
    (work / "config.json").write_bytes(CONFIG)
    (work / "model.safetensors.bin").write_bytes(WEIGHTS)
    (work / "sub").mkdir()
    (work / "sub/notes.txt").write_bytes(b"small and inline\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-m", "A model pushed with git\n\nWith a body.", cwd=work)
    git.run("push", "origin", "main", cwd=work)

    local = git.out("rev-parse", "HEAD", cwd=work)
    assert api.model_info("alice/pushed").sha == local  # the id the client made
    commit = api.list_repo_commits("alice/pushed")[0]
    assert (commit.commit_id, commit.title) == (local, "A model pushed with git")
    for name, content in (("config.json", CONFIG), ("model.safetensors.bin", WEIGHTS),
                          ("sub/notes.txt", b"small and inline\n")):
        path = huggingface_hub.hf_hub_download("alice/pushed", name, endpoint=service.url, token=WRITE_TOKEN)
        assert Path(path).read_bytes() == content

    # A second clone rebuilds the same objects: the pushed commit serialises byte for byte.
    git.run("clone", f"{service.url}/alice/pushed", "again", cwd=tmp_path)
    again = tmp_path / "again"
    assert git.out("rev-parse", "HEAD", cwd=again) == local
    assert git.out("rev-parse", "HEAD^{tree}", cwd=again) == git.out("rev-parse", "HEAD^{tree}", cwd=work)
    assert (again / "model.safetensors.bin").read_bytes() == WEIGHTS
    assert git.out("lfs", "ls-files", "--name-only", cwd=again) == "model.safetensors.bin"


def test_non_fast_forward_is_refused(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    head = _hub_repo(api, "alice/linear")
    git.run("clone", f"{service.url}/alice/linear", "linear", cwd=tmp_path)
    work = tmp_path / "linear"
    (work / "config.json").write_bytes(b"{}\n")
    git.run("commit", "-am", "rewrite", "--amend", cwd=work)
    refused = git.run("push", "--force", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert "non-fast-forward" in refused.stderr and "deltahub keeps every branch's history" in refused.stderr
    assert api.model_info("alice/linear").sha == head


def test_branches_and_tags_are_created_and_deleted_by_push(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    _hub_repo(api, "alice/refs")
    git.run("clone", f"{service.url}/alice/refs", "refs", cwd=tmp_path)
    work = tmp_path / "refs"
    git.run("checkout", "-b", "topic", cwd=work)
    (work / "extra.txt").write_bytes(b"on a branch\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-m", "topic work", cwd=work)
    git.run("tag", "v2", cwd=work)
    git.run("push", "origin", "topic", "v2", cwd=work)
    topic = git.out("rev-parse", "HEAD", cwd=work)
    refs = api.list_repo_refs("alice/refs")
    assert {b.name: b.target_commit for b in refs.branches}["topic"] == topic
    assert {t.name: t.target_commit for t in refs.tags}["v2"] == topic

    git.run("push", "origin", "--delete", "topic", "v2", cwd=work)
    refs = api.list_repo_refs("alice/refs")
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
    refused = git.run("push", "origin", "--delete", "main", cwd=work, check=False)
    assert refused.returncode != 0 and "main is the repository's default branch" in refused.stderr


def test_a_private_repository_is_invisible_to_anonymous_clones(
    api: huggingface_hub.HfApi, service: RunningService, anonymous_git: Git, git: Git, tmp_path: Path
) -> None:
    _hub_repo(api, "alice/secret", private=True)
    private = anonymous_git.run("clone", f"{service.url}/alice/secret", "a", cwd=tmp_path, check=False)
    missing = anonymous_git.run("clone", f"{service.url}/alice/nothing", "b", cwd=tmp_path, check=False)
    assert private.returncode == missing.returncode != 0
    assert private.stderr.replace("secret", "nothing").replace("'a'", "'b'") == missing.stderr
    for path in ("/alice/secret/info/refs?service=git-upload-pack", "/alice/nothing/info/refs?service=git-upload-pack"):
        answer = service.http.get(path)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic")
    assert not (tmp_path / "a").exists()
    git.run("clone", f"{service.url}/alice/secret", "c", cwd=tmp_path)  # with the owner's token it clones
    assert (tmp_path / "c/weights/model.bin").read_bytes() == WEIGHTS


def test_anonymous_push_is_challenged_and_refused(
    api: huggingface_hub.HfApi, service: RunningService, anonymous_git: Git, tmp_path: Path
) -> None:
    head = _hub_repo(api, "alice/public")
    anonymous_git.run("clone", f"{service.url}/alice/public", "p", cwd=tmp_path)
    work = tmp_path / "p"
    (work / "x.txt").write_bytes(b"x\n")
    anonymous_git.run("add", ".", cwd=work)
    anonymous_git.run("commit", "-m", "x", cwd=work)
    refused = anonymous_git.run("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert api.model_info("alice/public").sha == head


def test_a_moved_repository_clones_under_its_old_name(
    api: huggingface_hub.HfApi, service: RunningService, anonymous_git: Git, tmp_path: Path
) -> None:
    head = _hub_repo(api, "alice/before")
    api.move_repo("alice/before", "alice/after")
    anonymous_git.run("clone", f"{service.url}/alice/before", "old", cwd=tmp_path)
    assert anonymous_git.out("rev-parse", "HEAD", cwd=tmp_path / "old") == head
    assert (tmp_path / "old/weights/model.bin").read_bytes() == WEIGHTS


def test_shallow_clone_and_single_branch(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    head = _hub_repo(api, "alice/deep")
    api.create_branch("alice/deep", branch="topic")
    git.run("clone", "--depth", "1", "--single-branch", f"{service.url}/alice/deep", "shallow", cwd=tmp_path)
    work = tmp_path / "shallow"
    assert git.out("log", "--format=%H", cwd=work) == head
    assert git.out("branch", "-r", "--format=%(refname:short)", cwd=work).split() == ["origin/HEAD", "origin/main"]
    assert (work / "weights/model.bin").read_bytes() == WEIGHTS
