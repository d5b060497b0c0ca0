"""Reads from staging check every byte: against block sums, or, for an upload staged by a release that
recorded none, against the whole file's SHA-256 before anything is sent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.catalog.models import FileObject
from storage.core.blocksums import BLOCK_BYTES, CorruptStagedFile
from storage.core.errors import IntegrityError
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, read_all


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'catalog.sqlite3'}", local_store)


def staged(hub: Hub, data: bytes, *, drop_sums: bool = False) -> tuple[str, str]:
    info = hub.upload([data])
    with hub.session() as s:
        row = s.get(FileObject, info.sha256)
        assert row is not None and row.staging_key is not None and row.staging_sums is not None
        if drop_sums:
            row.staging_sums = None
        return info.sha256, row.staging_key


def flip(hub: Hub, key: str, position: int) -> None:
    blob = bytearray(hub.store.get(key))
    blob[position] ^= 0x80
    hub.store.put(key, bytes(blob))


@pytest.mark.parametrize("drop_sums", [False, True], ids=["block sums", "no sums (earlier release)"])
def test_staged_ranges_read_exactly(hub: Hub, drop_sums: bool) -> None:
    data = os.urandom(2 * BLOCK_BYTES + 999)
    sha, _ = staged(hub, data, drop_sums=drop_sums)
    for start, end in ((0, len(data)), (5, 6), (BLOCK_BYTES - 1, BLOCK_BYTES + 1), (len(data) - 3, len(data))):
        assert read_all(hub, sha, start, end) == data[start:end]


def test_damage_without_sums_is_refused_before_any_byte(hub: Hub) -> None:
    data = os.urandom(BLOCK_BYTES + 10)
    sha, key = staged(hub, data, drop_sums=True)
    flip(hub, key, len(data) - 1)
    with pytest.raises(IntegrityError, match="is damaged: its bytes hash to"):
        hub.read(sha, 0, 10)  # even a range far from the damage: nothing proves those bytes otherwise


def test_damage_with_sums_fails_only_ranges_that_touch_it(hub: Hub) -> None:
    data = os.urandom(2 * BLOCK_BYTES + 10)
    sha, key = staged(hub, data)
    flip(hub, key, BLOCK_BYTES + 1)
    assert read_all(hub, sha, 0, BLOCK_BYTES) == data[:BLOCK_BYTES]
    with pytest.raises(CorruptStagedFile, match="block 1 "):
        read_all(hub, sha, BLOCK_BYTES, BLOCK_BYTES + 2)
