"""Our git ids are dulwich's (a maintained git implementation) for any tree of files and any commit."""

from __future__ import annotations

from dulwich.objects import Blob, Commit, Tree
from hypothesis import given
from hypothesis import strategies as st

from storage.core.gitobjects import blob_id, commit_id, identity, lfs_pointer, parse_pointer, tree_objects

names = st.text(alphabet="ab-._0", min_size=1, max_size=4).filter(lambda n: n not in {".", ".."})
paths = st.lists(names, min_size=1, max_size=3).map("/".join)


def _dulwich_tree(files: dict[str, bytes]) -> bytes:
    """Build nested dulwich trees bottom-up and return the root id."""
    folders: dict[str, Tree] = {"": Tree()}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), Tree())
    for path, content in files.items():
        folder, _, name = path.rpartition("/")
        folders[folder].add(name.encode(), 0o100644, Blob.from_string(content).id)
    for folder in sorted(folders, key=lambda f: -len(f.split("/")) if f else 0):
        if folder:
            parent, _, name = folder.rpartition("/")
            folders[parent].add(name.encode(), 0o040000, folders[folder].id)
    return folders[""].id


@given(st.dictionaries(paths, st.binary(max_size=40), max_size=12))
def test_tree_ids_agree_with_dulwich(files: dict[str, bytes]) -> None:
    # A path cannot be both a file and a folder.
    folders = {"/".join(p.split("/")[:d]) for p in files for d in range(1, p.count("/") + 1)}
    files = {p: c for p, c in files.items() if p not in folders}
    root, trees, _ = tree_objects({p: blob_id(c) for p, c in files.items()})
    assert root == _dulwich_tree(files).decode()
    assert root in trees


@given(st.text(max_size=30), st.booleans(), st.integers(0, 2**31))
def test_commit_ids_agree_with_dulwich(message: str, has_parent: bool, when: int) -> None:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(when, UTC)
    line = identity("ann", moment)
    commit = Commit()
    commit.tree = Tree().id
    commit.parents = [b"1" * 40] if has_parent else []
    commit.author = commit.committer = b"ann <ann@users.noreply.deltahub>"
    commit.author_time = commit.commit_time = when
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message.encode()
    parent = "1" * 40 if has_parent else None
    assert commit_id(Tree().id.decode(), parent, line, line, message) == commit.id.decode()


def test_pointers_round_trip_and_others_are_not_pointers() -> None:
    pointer = lfs_pointer("a" * 64, 12)
    assert parse_pointer(pointer) == ("a" * 64, 12)
    assert parse_pointer(pointer + b"x") is None
    assert parse_pointer(b"hello") is None
