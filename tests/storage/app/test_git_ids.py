"""Commits made through the hub get git ids: rebuilt with dulwich from the repository's files, the
commit object hashes to the id the hub reports (inline files as blobs, LFS files as pointers)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dulwich.objects import Blob, Commit, Tree, parse_timezone
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import models
from storage.catalog.db import make_engine
from storage.core.gitobjects import lfs_pointer
from storage.objectstore import ObjectStore
from tests.hubs import make_hub


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store)


def _identity(line: str) -> tuple[bytes, int, int]:
    who, when, zone = line.rsplit(" ", 2)
    return who.encode(), int(when), parse_timezone(zone.encode())[0]


def test_an_api_commit_id_is_the_git_id_of_its_objects(hub: Hub, database_url: str) -> None:
    hub.create_repo("org/m")
    small, big = b"hello\n", b"\x00" * 5000
    additions = []
    for path, data, lfs in (("README.md", small, False), ("w/model.bin", big, True)):
        info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
        additions.append(FileAddition(path, info.sha256, lfs=lfs))
    made = hub.commit("org/m", "main", message="add files", additions=additions)

    engine = make_engine(database_url)
    try:
        with Session(engine) as s:
            row = s.scalars(select(models.Commit).where(models.Commit.oid == made.oid)).one()
            assert row is not None
            lines = (row.git_author, row.git_committer)
    finally:
        engine.dispose()
    pointer = Blob.from_string(lfs_pointer(hashlib.sha256(big).hexdigest(), len(big)))
    folder = Tree()
    folder.add(b"model.bin", 0o100644, pointer.id)
    root = Tree()
    root.add(b".gitattributes", 0o100644, Blob.from_string(MODEL_GITATTRIBUTES).id)
    root.add(b"README.md", 0o100644, Blob.from_string(small).id)
    root.add(b"w", 0o040000, folder.id)
    commit = Commit()
    commit.tree, commit.message = root.id, b"add files"
    assert made.parent_oid is not None
    commit.parents = [made.parent_oid.encode()]
    commit.author, commit.author_time, commit.author_timezone = _identity(lines[0])
    commit.committer, commit.commit_time, commit.commit_timezone = _identity(lines[1])
    assert commit.id.decode() == made.oid
    assert hub.resolve("org/m", made.oid).oid == made.oid
