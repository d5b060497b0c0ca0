"""The repository use cases on a real catalog (SQLite and PostgreSQL) and a local store."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.core.errors import EntryNotFound
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, push


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store)


def test_a_tree_is_read_only_through_its_own_repository(hub: Hub) -> None:
    push(hub, "alice/private", {"secret.txt": b"alice's"})
    push(hub, "bob/public", {"readme.txt": b"bob's"})
    alice_head = hub.resolve("alice/private", "main").oid

    # Every repository starts with its initial commit's .gitattributes.
    assert [e.path for e in hub.list_tree("alice/private", alice_head)] == [".gitattributes", "secret.txt"]
    # Another repository's commit id names no tree here, even though the id exists in the catalog.
    assert hub.list_tree("bob/public", alice_head) == []
    with pytest.raises(EntryNotFound):
        hub.get_entry("bob/public", alice_head, "secret.txt")
    assert hub.get_entry("alice/private", alice_head, "secret.txt").file.size == len(b"alice's")


def test_history_and_branches(hub: Hub) -> None:
    push(hub, "org/model", {"a.txt": b"1"})
    push(hub, "org/model", {"b.txt": b"2"})
    head = hub.resolve("org/model", "main")
    history = hub.list_commits("org/model", "main")
    assert history[0].oid == head.oid and history[1].oid == head.parent_oid
    assert hub.list_branches("org/model") == {"main": head.oid}
    assert [e.path for e in hub.list_tree("org/model", head.oid)] == [".gitattributes", "a.txt", "b.txt"]


def test_a_moved_repository_is_found_under_each_old_name_until_one_is_taken_back(hub: Hub) -> None:
    push(hub, "org/a", {"w.txt": b"1"})
    hub.move_repo("org/a", "org/b")
    hub.move_repo("org/b", "org/c")
    assert hub.moved_to("org/a") == hub.moved_to("org/b") == hub.get_repo("org/c")
    assert hub.moved_to("org/c") is None and hub.moved_to("org/a", repo_type="dataset") is None
    # Moving back onto an old name ends that name's redirect (the repository holds it again).
    hub.move_repo("org/c", "org/a")
    assert hub.moved_to("org/a") is None and hub.moved_to("org/c") == hub.get_repo("org/a")
    created = hub.create_repo("org/b")
    assert hub.moved_to("org/b") is None and hub.get_repo("org/b") == created
    hub.delete_repo("org/a")
    assert hub.moved_to("org/c") is None
