"""A repository's git objects rebuilt from the catalog (storage/app/git_objects.py), on SQLite and
PostgreSQL: every commit under its stored id, refs and HEAD, and a refusal, never a different id, when
the catalog does not hold what rebuilds an object."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit
from sqlalchemy import update

from storage.app.git_objects import GitObjects
from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import mirror, repos
from storage.catalog.models import RefKind, TreeEntry
from storage.core.errors import GitNotServable, IntegrityError
from storage.core.gitobjects import GitBlob, blob_id, lfs_pointer
from storage.objectstore import ObjectStore
from tests.hubs import make_hub


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store)


def _add(hub: Hub, repo_id: str, files: dict[str, tuple[bytes, bool]], message: str) -> str:
    additions = []
    for path, (data, lfs) in files.items():
        info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
        additions.append(FileAddition(path, info.sha256, lfs=lfs))
    return hub.commit(repo_id, "main", message=message, additions=additions).oid


def test_every_commit_rebuilds_under_its_id_with_refs_and_head(hub: Hub) -> None:
    hub.create_repo("org/m")
    first = _add(hub, "org/m", {"README.md": (b"# m\n", False), "w/model.bin": (b"\x01" * 3000, True)}, "one")
    second = _add(hub, "org/m", {"config.json": (b"{}\n", False)}, "two")
    hub.create_tag("org/m", "v1", revision=first)
    hub.create_branch("org/m", "topic", revision=first)
    git = GitObjects(hub.session, hub.read).repository("org/m", "model")
    assert git.refs[b"refs/heads/main"] == second.encode()
    assert git.refs[b"refs/heads/topic"] == git.refs[b"refs/tags/v1"] == first.encode()
    assert git.refs.get_symrefs()[b"HEAD"] == b"refs/heads/main"
    for oid in [c.oid for c in hub.list_commits("org/m", "main")]:
        commit = git[oid.encode()]
        assert isinstance(commit, Commit) and commit.id.decode() == oid
    tip = git[second.encode()]
    assert isinstance(tip, Commit)
    names = {e.path.decode(): e.sha for e in git.object_store.iter_tree_contents(tip.tree)}
    pointer = lfs_pointer(hashlib.sha256(b"\x01" * 3000).hexdigest(), 3000)
    assert names["w/model.bin"].decode() == blob_id(pointer)
    readme = git[names["README.md"]]
    assert isinstance(readme, Blob) and readme.data == b"# m\n"


def test_a_mirrored_commit_is_refused_not_served_under_another_id(hub: Hub) -> None:
    hub.create_repo("org/mirrored")
    data = b"mirrored\n"
    info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
    upstream_id = "ab" * 20  # the upstream's id: the mirror holds no commit object that hashes to it
    with hub.session() as s:
        repo = repos.find_repo(s, "org/mirrored")
        mirror.add_commit(s, repo, upstream_id, {"a.txt": info.sha256}, blobs={"a.txt": GitBlob(False, blob_id(data))},
                          message="upstream", parent_oid=None)
        mirror.point_ref(s, repo, "mirrored", RefKind.BRANCH, upstream_id)
    with pytest.raises(GitNotServable, match=f"commit {upstream_id} of 'org/mirrored' was mirrored"):
        GitObjects(hub.session, hub.read).repository("org/mirrored", "model")


def test_two_local_repositories_mirror_one_upstream_commit_each_its_own(hub: Hub) -> None:
    """The same upstream commit id under two local repositories (mirrors of a fork and its origin): each
    holds it with its tree; mirroring it again is a no-op; deleting one leaves the other whole."""
    data = b"mirrored twice\n"
    info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
    upstream_id = "cd" * 20
    blobs = {"a.txt": GitBlob(False, blob_id(data))}
    for name in ("org/origin", "org/fork"):
        hub.create_repo(name)
        with hub.session() as s:
            repo = repos.find_repo(s, name)
            assert mirror.add_commit(s, repo, upstream_id, {"a.txt": info.sha256}, blobs=blobs,
                                     message="upstream", parent_oid=None)
            mirror.point_ref(s, repo, "mirrored", RefKind.BRANCH, upstream_id)
    with hub.session() as s:
        fork = repos.find_repo(s, "org/fork")
        assert not mirror.add_commit(s, fork, upstream_id, {"a.txt": info.sha256}, blobs=blobs,
                                     message="upstream", parent_oid=None)
    hub.delete_repo("org/origin")
    with hub.session() as s:
        fork = repos.find_repo(s, "org/fork")
        commit = repos.resolve(s, fork, "org/fork", "mirrored")
        assert commit.oid == upstream_id
        assert [e.path for e, _ in repos.tree(s, fork, upstream_id)] == ["a.txt"]


def test_a_blob_that_does_not_rebuild_is_an_integrity_error(hub: Hub) -> None:
    hub.create_repo("org/broken")
    _add(hub, "org/broken", {"a.txt": (b"content\n", False)}, "one")
    with hub.session() as s:
        s.execute(update(TreeEntry).where(TreeEntry.path == "a.txt").values(git_oid="0" * 40))
    with pytest.raises(IntegrityError, match=r"'a\.txt' of commit .* does not rebuild its git blob 0{40}"):
        GitObjects(hub.session, hub.read).repository("org/broken", "model")
