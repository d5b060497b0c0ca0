from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from service.tree import list_tree, page_after
from storage.app.views import FileInfo, TreeEntry


def entries(*paths: str, sha: str = "a") -> list[TreeEntry]:
    return [TreeEntry(p, FileInfo(sha * 64, len(p), "blob", "staged")) for p in sorted(paths)]


FILES = entries("README.md", "a/b/c.bin", "a/d.txt", "a.txt", "z/y.json")


def test_one_level() -> None:
    root = list_tree(FILES, "", recursive=False)
    assert [(i["type"], i["path"]) for i in root] == [
        ("file", "README.md"),
        ("directory", "a"),
        ("file", "a.txt"),
        ("directory", "z"),
    ]
    assert [i["path"] for i in list_tree(FILES, "a", recursive=False)] == ["a/b", "a/d.txt"]
    assert list_tree(FILES, "nope", recursive=False) is None
    assert list_tree([], "", recursive=True) == []


def test_recursive_lists_every_file_and_directory() -> None:
    paths = [i["path"] for i in list_tree(FILES, "", recursive=True)]
    assert paths == sorted(paths)
    assert set(paths) == {"README.md", "a", "a/b", "a/b/c.bin", "a/d.txt", "a.txt", "z", "z/y.json"}
    assert [i["path"] for i in list_tree(FILES, "a/", recursive=True)] == ["a/b", "a/b/c.bin", "a/d.txt"]


def test_directory_oid_follows_its_content() -> None:
    before = {i["path"]: i["oid"] for i in list_tree(FILES, "", recursive=True)}
    changed = entries("README.md", "a/b/c.bin", "a/d.txt", "a.txt") + entries("z/y.json", sha="b")
    after = {i["path"]: i["oid"] for i in list_tree(changed, "", recursive=True)}
    assert before["a"] == after["a"] and before["a/b"] == after["a/b"]
    assert before["z"] != after["z"]


def test_files_are_described_as_lfs_objects() -> None:
    (item,) = list_tree(entries("w.bin"), "", recursive=False)
    assert item["lfs"] == {
        "oid": "a" * 64,
        "size": 5,
        "pointerSize": len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{'a' * 64}\nsize 5\n"),
    }


@given(st.sets(st.from_regex(r"[a-c]{1,2}(/[a-c]{1,2}){0,2}", fullmatch=True), max_size=30), st.integers(1, 7))
def test_pages_cover_the_listing_once(paths: set[str], size: int) -> None:
    # A path cannot be both a file and a directory.
    files = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    items = list_tree(entries(*files), "", recursive=True) or []
    seen, cursor = [], None
    while True:
        page, cursor = page_after(items, cursor, size)
        assert len(page) <= size
        seen += page
        if cursor is None:
            break
    assert seen == items


def test_timestamps_parse_in_the_client() -> None:
    from huggingface_hub.utils import parse_datetime

    from service.hf_json import hub_time

    moment = datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert parse_datetime(hub_time(moment)) == datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
