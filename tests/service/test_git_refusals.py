"""What a git push may not do, with the real clients: each refusal names its reason as git shows it, and
leaves the repository as it was (no commit, no ref moved, no file staged for it)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import pytest

from service.accounts import AccountAdmin
from tests.service.conftest import WRITE_TOKEN, RunningService
from tests.service.git_support import Git

pytestmark = pytest.mark.usefixtures("lfs_client")


def _clone(api: huggingface_hub.HfApi, service: RunningService, git: Git, tmp_path: Path, repo_id: str) -> Path:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"{}\n", path_in_repo="config.json", repo_id=repo_id)
    git.run("clone", f"{service.url}/{repo_id}", "work", cwd=tmp_path)
    return tmp_path / "work"


def _executable(git: Git, work: Path) -> None:
    (work / "run.sh").write_bytes(b"#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)


def _symlink(git: Git, work: Path) -> None:
    (work / "link").symlink_to("config.json")


def _merge(git: Git, work: Path) -> None:
    git.run("checkout", "-q", "-b", "side", cwd=work)
    (work / "side.txt").write_bytes(b"side\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "side", cwd=work)
    git.run("checkout", "-q", "main", cwd=work)
    (work / "main.txt").write_bytes(b"main\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "main", cwd=work)
    git.run("merge", "-q", "--no-edit", "side", cwd=work)


def _bad_safetensors(git: Git, work: Path) -> None:
    (work / "model.safetensors").write_bytes(b"\x01\x02\x03")  # LFS by the Hub's .gitattributes


def _encoding_header(git: Git, work: Path) -> None:
    git.run("config", "i18n.commitEncoding", "ISO-8859-1", cwd=work)


@pytest.mark.parametrize(("change", "reason"), [
    (_executable, "'run.sh' is an executable: deltahub keeps plain files (mode 100644)"),
    (_symlink, "'link' is a symlink: deltahub keeps plain files (mode 100644)"),
    (_merge, "is a merge commit: deltahub keeps linear history (rebase)"),
    (_bad_safetensors, "file has 3 bytes, fewer than the 8 that hold the header length"),
    (_encoding_header, "has headers deltahub does not keep (a signature, an encoding): it would not keep its id"),
])
def test_commits_the_catalog_cannot_keep_or_would_refuse_are_refused(
    api: huggingface_hub.HfApi, service: RunningService, tmp_path: Path, change: Callable[[Git, Path], None],
    reason: str,
) -> None:
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/strict")
    before = api.model_info("alice/strict").sha
    change(git, work)
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "change", "--allow-empty", cwd=work)
    refused = git.run("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0 and reason in refused.stderr, refused.stderr
    assert api.model_info("alice/strict").sha == before


def test_an_lfs_pointer_without_its_upload_is_refused(
    api: huggingface_hub.HfApi, service: RunningService, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/pointers")
    weights = os.urandom(20_000)
    (work / "w.bin").write_bytes(weights)
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "weights", cwd=work)
    refused = git.run("push", "origin", "main", cwd=work, check=False, env={"GIT_LFS_SKIP_PUSH": "1"})
    sha = hashlib.sha256(weights).hexdigest()
    assert refused.returncode != 0
    assert f"the LFS object of 'w.bin' ({sha}) was not uploaded: install git-lfs and push again" in refused.stderr
    assert not service.hub.has_file(sha)
    git.run("push", "origin", "main", cwd=work)  # with the LFS upload it goes through
    assert service.hub.has_file(sha)


def test_a_pack_over_the_bound_is_refused_with_413_and_nothing_stored(
    make_service: Callable[..., RunningService], tmp_path: Path
) -> None:
    service = make_service(git_max_pack_bytes=20_000)
    api = huggingface_hub.HfApi(endpoint=service.url, token=WRITE_TOKEN)
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/bounded")
    before = api.model_info("alice/bounded").sha
    big = os.urandom(50_000)  # a .txt: not LFS, so it travels in the pack
    (work / "big.txt").write_bytes(big)
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "big", cwd=work)
    refused = git.run("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0 and "413" in refused.stderr, refused.stderr
    assert api.model_info("alice/bounded").sha == before
    assert not service.hub.has_file(hashlib.sha256(big).hexdigest())


def test_annotated_and_moved_tags_are_refused(
    api: huggingface_hub.HfApi, service: RunningService, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/tags")
    git.run("tag", "-a", "v1", "-m", "annotated", cwd=work)
    refused = git.run("push", "origin", "v1", cwd=work, check=False)
    assert refused.returncode != 0 and "annotated tags are not kept: push a lightweight tag" in refused.stderr
    git.run("tag", "-d", "v1", cwd=work)
    git.run("tag", "v1", cwd=work)
    git.run("push", "origin", "v1", cwd=work)
    (work / "later.txt").write_bytes(b"later\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "later", cwd=work)
    git.run("push", "origin", "main", cwd=work)
    git.run("tag", "-f", "v1", cwd=work)
    moved = git.run("push", "--force", "origin", "v1", cwd=work, check=False)
    assert moved.returncode != 0 and "tags never move here" in moved.stderr
    tags = {t.name: t.target_commit for t in api.list_repo_refs("alice/tags").tags}
    assert tags["v1"] == git.out("rev-parse", "HEAD~1", cwd=work)


def test_a_push_past_the_namespace_quota_is_refused_before_anything_is_staged(
    api: huggingface_hub.HfApi, service: RunningService, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/quota")
    accounts = AccountAdmin(service.hub.session)
    accounts.create_user("alice")
    accounts.set_quota("alice", service.hub.quotas.usage("alice")[0] + 1000)
    before = api.model_info("alice/quota").sha
    text = os.urandom(3000)  # a regular file, in the pack
    (work / "notes.txt").write_bytes(text)
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "too much", cwd=work)
    refused = git.run("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0 and "over its quota" in refused.stderr, refused.stderr
    assert api.model_info("alice/quota").sha == before
    assert not service.hub.has_file(hashlib.sha256(text).hexdigest())


def test_an_atomic_push_is_not_offered(api: huggingface_hub.HfApi, service: RunningService, tmp_path: Path) -> None:
    """Each ref is its own transaction here, so git is told; `git push --atomic` then stops before sending."""
    git = Git(tmp_path / "home", service.url, WRITE_TOKEN)
    work = _clone(api, service, git, tmp_path, "alice/atomic")
    before = api.model_info("alice/atomic").sha
    (work / "a.txt").write_bytes(b"a\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "a", cwd=work)
    refused = git.run("push", "--atomic", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0 and "does not support --atomic push" in refused.stderr, refused.stderr
    assert api.model_info("alice/atomic").sha == before
    git.run("push", "origin", "main", cwd=work)
