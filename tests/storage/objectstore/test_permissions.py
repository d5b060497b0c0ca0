"""The embedded store and catalog keep model bytes private to the service's user (issue 12, item 10)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.catalog.db import make_engine, upgrade
from storage.objectstore import LocalObjectStore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The common default: without our modes every file would be world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_objects_and_their_folders_are_private(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put("packs/ab/cd/object", b"private model bytes")
    store.put_stream("staging/upload", iter([b"a", b"b"]))
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    folders = [tmp_path / "store", *(p for p in (tmp_path / "store").rglob("*") if p.is_dir())]
    assert len(files) == 2 and len(folders) >= 5
    assert {mode(p) for p in files} == {0o600}
    assert {mode(p) for p in folders} == {0o700}


def test_a_store_made_world_readable_by_an_earlier_release_is_closed_on_open(tmp_path: Path) -> None:
    for folder in ("store", "store/objects", "store/tmp"):
        (tmp_path / folder).mkdir(mode=0o755)
    LocalObjectStore(tmp_path / "store")
    assert {mode(tmp_path / f) for f in ("store", "store/objects", "store/tmp")} == {0o700}


def test_the_sqlite_catalog_and_its_folder_are_private(tmp_path: Path) -> None:
    database = tmp_path / "data" / "catalog.sqlite3"
    url = f"sqlite:///{database}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            assert mode(database) == 0o600
            assert mode(database.parent) == 0o700
            # SQLite gives its write-ahead log the database file's mode.
            wal = database.with_name(database.name + "-wal")
            assert wal.exists() and mode(wal) == 0o600
    finally:
        engine.dispose()
