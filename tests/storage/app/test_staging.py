"""Staging: uploads stream into the store hashed and checked; formats read staged headers by range."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from storage.app.staging import detect_staged_format, read_staged_layout, sniff_staged_format, stage, staged_reader
from storage.core.errors import InvalidInput, UploadMismatch
from storage.core.formats.safetensors import HeaderTooLarge
from storage.objectstore import LocalObjectStore, ObjectStore
from tests.models import to_safetensors


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def staged_keys(store: ObjectStore) -> list[str]:
    return [info.key for info in store.list("staging/")]


def test_an_upload_is_staged_under_a_random_key_with_its_hash(store: ObjectStore) -> None:
    data = b"x" * 1000
    staged = stage(store, [data[:10], b"", data[10:]], expected_sha256=hashlib.sha256(data).hexdigest(),
                   expected_size=len(data))  # fmt: skip
    assert (staged.sha256, staged.size) == (hashlib.sha256(data).hexdigest(), 1000)
    assert staged.key.startswith("staging/") and store.get(staged.key) == data
    assert stage(store, [data]).key != staged.key


@pytest.mark.parametrize(
    ("claims", "match"),
    [({"expected_size": 5}, "more than"), ({"expected_size": 50}, "declared 50"),
     ({"expected_sha256": "0" * 64}, "hash to"), ({"max_bytes": 5}, "more than")],
)  # fmt: skip
def test_a_mismatched_upload_leaves_nothing_behind(store: ObjectStore, claims: dict[str, object], match: str) -> None:
    with pytest.raises(UploadMismatch, match=match):
        stage(store, [b"0123456789"], **claims)
    assert staged_keys(store) == []


def test_a_declared_size_over_the_limit_is_refused_before_reading(store: ObjectStore) -> None:
    def chunks() -> Iterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    with pytest.raises(InvalidInput, match="exceeds"):
        stage(store, chunks(), expected_size=100, max_bytes=10)
    assert staged_keys(store) == []


def test_staged_files_are_recognised_and_parsed_by_range(store: ObjectStore) -> None:
    model = to_safetensors({"w": np.ones((8, 8), np.float32)})
    st_key, blob_key = stage(store, [model]).key, stage(store, [b"not a model"]).key
    assert detect_staged_format(store, st_key, len(model), 1 << 20).format_id == "safetensors"
    assert detect_staged_format(store, blob_key, 11, 1 << 20).format_id == "blob"
    assert sniff_staged_format(store, st_key, len(model)).format_id == "safetensors"
    assert sniff_staged_format(store, blob_key, 11).format_id == "blob"
    empty = stage(store, [b""]).key
    assert sniff_staged_format(store, empty, 0).format_id == "blob"
    layout = read_staged_layout(store, st_key, "safetensors", len(model), 1 << 20)
    assert layout.tensors is not None and [t.name for t in layout.tensors] == ["w"]
    assert staged_reader(store, st_key)(0, 8) == model[:8]
    with pytest.raises(HeaderTooLarge):
        read_staged_layout(store, st_key, "safetensors", len(model), 8)
