"""A pushed history round-trips: commits made by git (any author lines, time zones, messages, trees of
small files and LFS pointers) become catalog commits whose rebuilt objects have the same ids, on SQLite
and PostgreSQL (storage/app/git_push.py, then storage/app/git_objects.py)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import MemoryRepo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.app.git_objects import GitObjects
from storage.app.git_push import GitPush, PushTarget
from storage.app.hub import Hub
from storage.core.gitobjects import lfs_pointer
from storage.objectstore import ObjectStore
from tests.hubs import make_hub

ZERO = "0" * 40
_names = itertools.count()

segment = st.text(alphabet="abcxyz_-.é", min_size=1, max_size=6).filter(lambda s: s not in (".", "..", ".git"))
paths = st.lists(segment, min_size=1, max_size=3).map("/".join)
contents = st.tuples(st.binary(max_size=300), st.booleans())  # (bytes, kept in LFS)
trees = st.dictionaries(paths, contents, min_size=1, max_size=5).filter(
    lambda t: not any(a != b and b.startswith(a + "/") for a in t for b in t)  # a file is never a folder
)
people = st.tuples(st.text(alphabet="AdaLovelace ", min_size=1, max_size=12).map(str.strip).filter(bool),
                   st.integers(0, 2**31), st.sampled_from([0, 19800, -25200, 3600]))
messages = st.text(min_size=0, max_size=40).filter(lambda m: "\x00" not in m and "\r" not in m)
histories = st.lists(st.tuples(trees, people, people, messages), min_size=1, max_size=4)


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store)


def _tree(store: MemoryRepo, files: dict[str, tuple[bytes, bool]], hub: Hub) -> ObjectID:
    """The git tree of `files` in `store`, as git would write it; LFS files uploaded to the hub first."""
    folders: dict[str, Tree] = {"": Tree()}
    for path, (data, lfs) in files.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), Tree())
        if lfs:  # git-lfs uploads the object first, through the batch API; then the pointer is a blob
            info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
            data = lfs_pointer(info.sha256, info.size)
        blob = Blob.from_string(data)
        store.object_store.add_object(blob)
        folders["/".join(parts[:-1])].add(parts[-1].encode(), 0o100644, blob.id)
    for folder in sorted(folders, key=lambda f: -f.count("/") - (1 if f else 0)):  # deepest first
        store.object_store.add_object(folders[folder])
        if folder:
            parent, _, name = folder.rpartition("/")
            folders[parent].add(name.encode(), 0o040000, folders[folder].id)
    return folders[""].id


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories)
def test_a_pushed_history_rebuilds_with_the_clients_ids(hub: Hub, history: list) -> None:
    repo_id = f"org/r{next(_names)}"
    hub.create_repo(repo_id)
    head = hub.resolve(repo_id, "main").oid
    sent = MemoryRepo()
    parent = head
    made: list[str] = []
    for files, author, committer, message in history:
        commit = Commit()
        commit.tree = _tree(sent, files, hub)
        commit.parents = [ObjectID(parent.encode())]
        commit.author, commit.author_time, commit.author_timezone = author[0].encode() + b" <a@x>", author[1], author[2]
        commit.committer, commit.commit_time, commit.commit_timezone = (committer[0].encode() + b" <c@x>",
                                                                         committer[1], committer[2])
        commit.message = message.encode()
        sent.object_store.add_object(commit)
        parent = commit.id.decode()
        made.append(parent)

    push = GitPush(hub.session, hub.uploads, hub.quotas, lambda job: None)
    target = PushTarget(repo_id, "model", "alice", set)
    assert push.update_ref(target, "refs/heads/main", head, parent, sent.object_store) is None

    assert [c.oid for c in hub.list_commits(repo_id, "main")][: len(made)] == made[::-1]
    rebuilt = GitObjects(hub.session, hub.read).repository(repo_id, "model")
    assert rebuilt.refs[b"refs/heads/main"] == parent.encode()
    for oid in made:
        want, got = sent[oid.encode()], rebuilt[oid.encode()]
        assert got.as_raw_string() == want.as_raw_string()
        assert isinstance(got, Commit) and isinstance(want, Commit)
        assert rebuilt[got.tree].as_raw_string() == sent[want.tree].as_raw_string()
    # Files read back through the hub are the pushed bytes, LFS ones as the object itself.
    files = history[-1][0]
    for path, (data, _lfs) in files.items():
        entry = hub.get_entry(repo_id, parent, path)
        assert b"".join(hub.read(entry.file.sha256)) == data


def test_a_second_push_of_the_same_tip_changes_nothing(hub: Hub) -> None:
    hub.create_repo("org/same")
    head = hub.resolve("org/same", "main").oid
    push = GitPush(hub.session, hub.uploads, hub.quotas, lambda job: None)
    target = PushTarget("org/same", "model", "alice", set)
    assert push.update_ref(target, "refs/heads/main", head, head, MemoryRepo().object_store) is None
    assert hub.resolve("org/same", "main").oid == head
    refused = push.update_ref(target, "refs/heads/main", ZERO, head, MemoryRepo().object_store)
    assert refused is not None and "fetch first" in refused


def _commit(sent: MemoryRepo, files: dict[str, tuple[bytes, bool]], hub: Hub, parent: str) -> str:
    commit = Commit()
    commit.tree = _tree(sent, files, hub)
    commit.parents = [ObjectID(parent.encode())]
    commit.author = commit.committer = b"Ada <a@x>"
    commit.author_time = commit.commit_time = 1_700_000_000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"more"
    sent.object_store.add_object(commit)
    return commit.id.decode()


def test_every_lfs_pointer_of_a_push_is_checked_in_one_question_and_an_unnamed_one_is_refused(hub: Hub) -> None:
    hub.create_repo("org/many")
    head = tip = hub.resolve("org/many", "main").oid
    sent = MemoryRepo()
    for n in range(3):  # 3 commits of 20 LFS files each, every one new
        tip = _commit(sent, {f"c{n}/f{i}.bin": (f"{n}:{i}".encode() * 9, True) for i in range(20)}, hub, tip)
    asked: list[list[str]] = []
    refused_sha = hashlib.sha256(b"1:7" * 9).hexdigest()

    def all_but_one(sha256s: Sequence[str]) -> set[str]:
        asked.append(list(sha256s))
        return set(sha256s) - {refused_sha}

    push = GitPush(hub.session, hub.uploads, hub.quotas, lambda job: None)
    refused = push.update_ref(PushTarget("org/many", "model", "alice", all_but_one), "refs/heads/main", head, tip,
                              sent.object_store)
    assert len(asked) == 1 and len(asked[0]) == 60
    assert refused is not None and "'c1/f7.bin'" in refused and "was not uploaded" in refused
    assert hub.resolve("org/many", "main").oid == head  # nothing of the push was committed
    assert push.update_ref(PushTarget("org/many", "model", "alice", set), "refs/heads/main", head, tip,
                           sent.object_store) is None
    assert hub.resolve("org/many", "main").oid == tip
