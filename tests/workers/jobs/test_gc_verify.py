"""GC frees exactly what nothing references; verify and reads catch a flipped byte."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog.models import FileObject, StoreObject, Tensor
from storage.core.errors import IntegrityError
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.gc import collect_garbage
from workers.jobs.verify import verify


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10,
                    pack_target_bytes=128 << 10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keys(hub: Hub) -> set[str]:
    return {info.key for prefix in ("packs/", "frames/", "staging/") for info in hub.store.list(prefix)}


def test_gc_frees_a_deleted_repository_but_keeps_shared_bases(hub: Hub) -> None:
    w = make_weights(1)
    base, tuned, other = (to_safetensors(x, "BF16") for x in (w, finetune(w, 2), make_weights(3)))
    ingest_all(hub, push(hub, "o/base", {"model.safetensors": base}))
    ingest_all(hub, push(hub, "o/tuned", {"model.safetensors": tuned}))
    ingest_all(hub, push(hub, "o/other", {"model.safetensors": other}))
    # Nothing is garbage yet, whatever the grace period.
    assert collect_garbage(hub, grace_seconds=0).deleted_keys == []
    # Deleting the base repository frees nothing the fine-tune still needs through its delta chain.
    hub.delete_repo("o/base")
    freed_base = collect_garbage(hub, grace_seconds=0)
    assert freed_base.files == 1
    assert read_all(hub, sha(tuned)) == tuned
    before = keys(hub)
    hub.delete_repo("o/other")
    report = collect_garbage(hub, grace_seconds=0)
    assert report.files == 1
    assert report.tensors > 0 and report.deleted_keys
    assert keys(hub) == before - set(report.deleted_keys)
    assert verify(hub).ok
    assert read_all(hub, sha(tuned)) == tuned


def test_gc_respects_the_grace_period_and_dry_run(hub: Hub) -> None:
    data = to_safetensors(make_weights(4))
    ingest_all(hub, push(hub, "o/x", {"model.safetensors": data}))
    hub.store.put("packs/" + "0" * 32, b"orphan left by a crashed ingest")
    hub.delete_repo("o/x")
    with hub.session() as s:
        objects, tensors = s.query(StoreObject).count(), s.query(Tensor).count()
    assert collect_garbage(hub).deleted_keys == []  # everything is younger than the default hour
    dry = collect_garbage(hub, dry_run=True, grace_seconds=0)
    assert "packs/" + "0" * 32 in dry.deleted_keys
    with hub.session() as s:
        assert (s.query(StoreObject).count(), s.query(Tensor).count()) == (objects, tensors)
    assert hub.store.head("packs/" + "0" * 32) is not None
    collect_garbage(hub, grace_seconds=0)
    assert keys(hub) == set()


def test_flipped_byte_is_detected_on_read_and_by_verify(hub: Hub) -> None:
    data = to_safetensors(make_weights(5), "BF16")
    ingest_all(hub, push(hub, "o/victim", {"model.safetensors": data}))
    ingest_all(hub, push(hub, "o/bystander", {"notes.txt": b"unrelated file " * 100}))
    assert verify(hub).ok
    with hub.session() as s:
        obj = s.query(StoreObject).filter(StoreObject.size > 1000).order_by(StoreObject.size.desc()).first()
        assert obj is not None
        key = obj.key
    blob = bytearray(hub.store.get(key))
    blob[len(blob) // 2] ^= 0x01
    hub.store.put(key, bytes(blob))
    hub.reader.cache = type(hub.reader.cache)(hub.reader.cache.max_bytes)
    with pytest.raises(IntegrityError):
        read_all(hub, sha(data))
    report = verify(hub)
    assert not report.ok
    assert [p.locations for p in report.problems] == [(("o/victim", "model.safetensors"),)]


def test_a_file_an_upload_was_told_is_held_outlives_the_grace_period_until_its_commit(hub: Hub) -> None:
    # Uploaded but not committed (an LFS PUT whose commit has not come yet), older than the grace period.
    data = b"uploaded, not yet committed" * 100
    info = hub.upload([data])
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    with hub.session() as s:
        s.get(FileObject, info.sha256).created_at = two_hours_ago  # type: ignore[union-attr]
    # The LFS batch of the client's next push answers "held", so the client skips the upload...
    assert hub.has_file(info.sha256)
    # ...and GC, running before the commit arrives, must keep it.
    collect_garbage(hub, grace_seconds=3600)
    assert hub.has_file(info.sha256)
    hub.create_repo("org/late", exist_ok=True)
    hub.commit("org/late", "main", message="now", additions=[FileAddition("x.bin", info.sha256)])
    assert read_all(hub, info.sha256) == data
    # A file nobody claimed is collected as before.
    other = hub.upload([b"abandoned upload" * 100])
    with hub.session() as s:
        s.get(FileObject, other.sha256).created_at = two_hours_ago  # type: ignore[union-attr]
    collect_garbage(hub, grace_seconds=3600)
    with hub.session() as s:
        assert s.get(FileObject, other.sha256) is None
