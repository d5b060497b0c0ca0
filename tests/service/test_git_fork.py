"""One git history in two repositories, with the real `git` and `git-lfs` clients against a real server:
a clone of A pushed into B (a fork, a second remote) keeps git's commit ids in both, each repository
keeps its own history from then on, and either survives the other's deletion."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import huggingface_hub
import pytest

from tests.service.conftest import WRITE_TOKEN, RunningService
from tests.service.git_support import Git
from workers.jobs.gc import collect_garbage

pytestmark = pytest.mark.usefixtures("lfs_client")

WEIGHTS = os.urandom(50_000)  # over TEST_OPTIONS' 4 KiB: an LFS file
CONFIG = b'{"model_type": "gpt2", "n_layer": 2}\n'
# deltahub keeps every branch's history (no force push), and a new repository's main holds its own
# initial commit: the fork lands on a branch of B.
FORK = "from-a"


@pytest.fixture
def git(tmp_path: Path, service: RunningService) -> Git:
    return Git(tmp_path / "alice", service.url, WRITE_TOKEN)


def _repo_a(api: huggingface_hub.HfApi, git: Git, service: RunningService, tmp_path: Path) -> Path:
    """alice/a with an API commit and a git commit (an LFS file), cloned; the clone's path."""
    api.create_repo("alice/a")
    api.upload_file(path_or_fileobj=CONFIG, path_in_repo="config.json", repo_id="alice/a")
    git.run("clone", f"{service.url}/alice/a", "a", cwd=tmp_path)
    work = tmp_path / "a"
    (work / "weights").mkdir()
    (work / "weights/model.bin").write_bytes(WEIGHTS)
    (work / "notes.txt").write_bytes(b"small and inline\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-m", "weights, by git", cwd=work)
    git.run("push", "origin", "main", cwd=work)
    return work


def _fork(api: huggingface_hub.HfApi, git: Git, service: RunningService, work: Path) -> None:
    api.create_repo("alice/b")
    git.run("remote", "add", "b", f"{service.url}/alice/b", cwd=work)
    git.run("push", "b", f"main:{FORK}", cwd=work)


def _clone(git: Git, service: RunningService, repo: str, branch: str, into: Path) -> Path:
    git.run("clone", "-b", branch, f"{service.url}/{repo}", into.name, cwd=into.parent)
    return into


def test_a_clone_pushed_into_a_second_repository_keeps_gits_ids_in_both(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    work = _repo_a(api, git, service, tmp_path)
    _fork(api, git, service, work)
    ids = git.out("log", "--format=%H", cwd=work).split()
    head = ids[0]

    for repo, branch in (("alice/a", "main"), ("alice/b", FORK)):
        assert [c.commit_id for c in api.list_repo_commits(repo, revision=branch)] == ids
        assert service.http.head(f"/{repo}/resolve/{branch}/config.json").headers["x-repo-commit"] == head
        assert service.http.head(f"/{repo}/resolve/{head}/notes.txt").status_code == 200  # by commit id
        clone = _clone(git, service, repo, branch, tmp_path / repo.replace("/", "-"))
        assert git.out("rev-parse", "HEAD", cwd=clone) == head
        assert git.out("rev-parse", "HEAD^{tree}", cwd=clone) == git.out("rev-parse", "HEAD^{tree}", cwd=work)
        assert (clone / "weights/model.bin").read_bytes() == WEIGHTS
        assert (clone / "config.json").read_bytes() == CONFIG
    refs = {ref.ref: ref.target_commit for ref in api.list_repo_refs("alice/b").branches}
    assert refs[f"refs/heads/{FORK}"] == head
    assert refs["refs/heads/main"] != head  # B's own initial commit stays its main

    # From here on each repository has its own history.
    later = api.upload_file(path_or_fileobj=b"# A only\n", path_in_repo="README.md", repo_id="alice/a").oid
    assert api.model_info("alice/b", revision=FORK).sha == head
    assert service.http.head(f"/alice/b/resolve/{later}/README.md").status_code == 404
    own = api.upload_file(path_or_fileobj=b"# B only\n", path_in_repo="README.md", repo_id="alice/b",
                          revision=FORK).oid
    assert own != later
    assert [c.commit_id for c in api.list_repo_commits("alice/b", revision=FORK)] == [own, *ids]
    assert [c.commit_id for c in api.list_repo_commits("alice/a")] == [later, *ids]
    git.run("fetch", "b", cwd=work)
    assert git.out("rev-parse", f"b/{FORK}", cwd=work) == own


def test_the_same_history_pushed_again_is_up_to_date_and_a_later_commit_fast_forwards(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    work = _repo_a(api, git, service, tmp_path)
    _fork(api, git, service, work)
    head = git.out("rev-parse", "HEAD", cwd=work)
    again = git.run("push", "b", f"main:{FORK}", cwd=work)
    assert "Everything up-to-date" in again.stderr
    # The held history under a second branch name of B, and A's newer commit pushed to both.
    git.run("push", "b", "main:copy", cwd=work)
    (work / "notes.txt").write_bytes(b"changed in the clone\n")
    git.run("commit", "-am", "both remotes", cwd=work)
    git.run("push", "origin", "main", cwd=work)
    git.run("push", "b", f"main:{FORK}", cwd=work)
    new = git.out("rev-parse", "HEAD", cwd=work)
    assert api.model_info("alice/a").sha == api.model_info("alice/b", revision=FORK).sha == new
    assert api.model_info("alice/b", revision="copy").sha == head
    assert [c.commit_id for c in api.list_repo_commits("alice/b", revision=FORK)][1] == head


def test_deleting_the_first_repository_leaves_the_fork_whole(
    api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path
) -> None:
    work = _repo_a(api, git, service, tmp_path)
    _fork(api, git, service, work)
    head = git.out("rev-parse", "HEAD", cwd=work)
    api.delete_repo("alice/a")
    collect_garbage(service.hub, grace_seconds=0)

    clone = _clone(git, service, "alice/b", FORK, tmp_path / "b-after")
    assert git.out("rev-parse", "HEAD", cwd=clone) == head
    assert (clone / "weights/model.bin").read_bytes() == WEIGHTS
    for name, content in (("weights/model.bin", WEIGHTS), ("config.json", CONFIG)):
        path = huggingface_hub.hf_hub_download("alice/b", name, revision=head, endpoint=service.url,
                                               token=WRITE_TOKEN, cache_dir=tmp_path / "cache")
        assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(content).digest()
    # A repository of A's name again is a new repository: its history is its own.
    api.create_repo("alice/a")
    assert service.http.head(f"/alice/a/resolve/{head}/config.json").status_code == 404
