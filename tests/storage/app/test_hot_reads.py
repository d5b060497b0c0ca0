"""The hub's reads with the hot-file cache, over each object store: the copy is local to the process
whatever the store, and a file read from its copy touches neither the store nor the decoder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.core import keys
from storage.objectstore import ObjectNotFound, ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import make_weights, to_safetensors


def test_a_hot_file_is_read_from_its_local_copy_on_every_store(tmp_path: Path, object_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", object_store, hot_cache_bytes=16 << 20)
    data = to_safetensors(make_weights(seed=3))
    ingest_all(hub, push(hub, "alice/m", {"model.safetensors": data}))
    sha = hashlib.sha256(data).hexdigest()
    located = hub.locate("alice/m", "main", "model.safetensors", may_read=lambda repo: True)
    assert located.source is not None
    source = located.source

    def download(start: int = 0, end: int | None = None) -> bytes:
        return b"".join(hub.read_from(source, start, end))

    assert read_all(hub, sha) == data and download() == data
    assert sha not in hub.reads.hot  # one download (jobs' reads do not count): nothing kept
    assert download() == data and sha in hub.reads.hot  # the second: kept
    copy = tmp_path / "hot" / sha
    assert copy.read_bytes() == data
    hub.reader.cache._entries.clear()
    for prefix in keys.ALL_PREFIXES:  # the stored frames gone: only the copy can answer now
        for info in list(object_store.list(prefix)):
            object_store.delete(info.key)
    assert download() == data
    assert download(1000, 5000) == data[1000:5000]
    assert not hub.reader.cache._entries
    with pytest.raises(ObjectNotFound):  # jobs (verify) read what the store holds, never the copy
        read_all(hub, sha)
