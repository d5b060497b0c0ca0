"""Repairing damaged data (workers/jobs/repair.py, verify's damage records), on SQLite and PostgreSQL.

What the end-to-end test with the real client (tests/reliability/test_repair.py) does not reach: a
damaged staged upload, a different file that holds a damaged tensor, and the rule that nothing is
deduplicated against or delta-coded against damaged data.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from storage.app.hub import Hub
from storage.app.staging import read_staged_layout, staged_reader
from storage.app.views import FileAddition
from storage.catalog import jobs, repos
from storage.catalog.models import DamagedFile, DamagedTensor, FileObject, FileSegment, Frame, Tensor
from storage.core.errors import FileDamaged
from storage.core.formats.safetensors import FORMAT_ID as SAFETENSORS
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs import lineage
from workers.jobs.ingest import run_ingest
from workers.jobs.verify import verify


@pytest.fixture
def hub(tmp_path: Path, database_url: str, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, database_url, local_store, frame_bytes=16 << 10, pack_target_bytes=64 << 10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh(hub: Hub) -> Hub:
    """The hub as another process sees it: no decoded frame cached."""
    return Hub(hub.settings, store=hub.store)


def damage_tensor(hub: Hub, file_sha: str, name: str) -> str:
    """Flip a byte in the payload of one frame of the file's tensor `name`; returns the tensor id."""
    with hub.session() as s:
        tensor_id = s.scalar(select(FileSegment.tensor_id).where(FileSegment.file_sha256 == file_sha,
                                                                 FileSegment.name == name))
        frame = s.scalars(select(Frame).where(Frame.tensor_id == tensor_id).order_by(Frame.seq).limit(1)).one()
        key, position = frame.object_key, frame.object_offset + frame.object_length - 7
    blob = bytearray(hub.store.get(key))
    blob[position] ^= 0x40
    hub.store.put(key, bytes(blob))
    assert tensor_id is not None
    return tensor_id


def unfinished(hub: Hub) -> list[int]:
    with hub.session() as s:
        return jobs.unfinished_jobs(s)


def test_a_damaged_staged_upload_is_replaced_by_the_next_upload_of_its_bytes(hub: Hub) -> None:
    data = to_safetensors(make_weights(7), "BF16")
    hub.create_repo("o/m")
    ingest_all(hub, unfinished(hub))
    info = hub.upload([data])
    hub.commit("o/m", "main", message="staged", additions=[FileAddition("model.safetensors", info.sha256)])
    with hub.session() as s:
        old_key = s.get(FileObject, info.sha256).staging_key  # type: ignore[union-attr]
    assert old_key is not None
    blob = bytearray(hub.store.get(old_key))
    blob[len(blob) // 2] ^= 0x01
    hub.store.put(old_key, bytes(blob))

    report = verify(hub)
    assert [(p.sha256, p.locations) for p in report.problems] == [(info.sha256, (("o/m", "model.safetensors"),))]
    assert report.problems[0].repair.startswith("its staged upload is damaged: push o/m/model.safetensors again")
    assert not hub.has_file(info.sha256)  # the LFS batch and Xet ask for the bytes

    hub.upload([data], expected_sha256=info.sha256, expected_size=len(data))
    assert hub.has_file(info.sha256)
    assert hub.store.head(old_key) is None  # the damaged copy is gone
    with hub.session() as s:
        assert s.scalar(select(func.count()).select_from(DamagedFile)) == 0
    assert read_all(hub, info.sha256) == data  # served from the new staged copy at once
    ingest_all(hub, unfinished(hub))
    with hub.session() as s:
        assert s.get(FileObject, info.sha256).state == "stored"  # type: ignore[union-attr]
    assert verify(fresh(hub)).ok


def test_a_file_holding_a_damaged_tensor_repairs_it_and_is_coded_against_nothing_damaged(hub: Hub) -> None:
    weights = make_weights(11)
    base = to_safetensors(weights, "BF16")
    ingest_all(hub, push(hub, "o/base", {"model.safetensors": base}))
    broken = damage_tensor(hub, sha(base), "layer.0.mlp.weight")
    with hub.session() as s:  # stored long before the repair (on a slow run, more than settling's slack)
        s.execute(update(FileObject).where(FileObject.sha256 == sha(base))
                  .values(stored_at=datetime.now(UTC) - timedelta(hours=1)))
    hub = fresh(hub)
    report = verify(hub)
    assert [p.sha256 for p in report.problems] == [sha(base)]
    with hub.session() as s:
        assert set(s.scalars(select(DamagedTensor.tensor_id))) == {broken}
    assert not hub.has_file(sha(base))

    # Another file with the same bytes for that tensor, and a relative of the base for the rest: it would
    # dedup the tensor and delta-code against the base, were they not damaged.
    relative = dict(weights)
    relative["layer.1.mlp.weight"] = weights["layer.1.mlp.weight"] * 1.001
    other = to_safetensors(relative, "BF16")
    job_ids = push(hub, "o/other", {"model.safetensors": other})
    with hub.session() as s:
        key = s.get(FileObject, sha(other)).staging_key  # type: ignore[union-attr]
    assert key is not None
    layout = read_staged_layout(hub.store, key, SAFETENSORS, len(other), max_header_bytes=1 << 20, max_tensors=100)
    assert lineage.choose_base(hub, sha(other), layout, staged_reader(hub.store, key), repo_id=None) is None
    results = [run_ingest(hub, job_id) for job_id in job_ids]
    assert results[0] is not None and results[0].still_damaged == []
    # Settled after the repair, once the base was whole again: it is the relative a base is chosen from.
    assert results[0].base_sha256 == sha(base)
    with hub.session() as s:
        assert s.scalar(select(func.count()).select_from(DamagedTensor)) == 0
        assert s.scalar(select(func.count()).select_from(DamagedFile)) == 0
    # Re-encoding the tensor from the other file's bytes repaired the base.
    assert read_all(fresh(hub), sha(base)) == base
    assert read_all(fresh(hub), sha(other)) == other
    assert verify(fresh(hub)).ok


def test_verify_drops_the_record_of_a_file_that_reads_back_whole(hub: Hub) -> None:
    data = to_safetensors(make_weights(5), "BF16")
    ingest_all(hub, push(hub, "o/m", {"model.safetensors": data}))
    with hub.session() as s:
        s.add(DamagedFile(sha256=sha(data), error="recorded by an earlier verify"))
    assert not hub.has_file(sha(data))
    assert verify(hub).ok
    assert hub.has_file(sha(data))


def test_a_commit_naming_a_damaged_file_without_uploading_it_again_is_refused(hub: Hub) -> None:
    data = to_safetensors(make_weights(9), "BF16")
    ingest_all(hub, push(hub, "o/m", {"model.safetensors": data}))
    damage_tensor(hub, sha(data), "embeddings.weight")
    hub = fresh(hub)
    assert not verify(hub).ok
    hub.create_repo("o/copy")
    ingest_all(hub, unfinished(hub))
    with pytest.raises(FileDamaged, match="upload its bytes again"):
        hub.commit("o/copy", "main", message="copy", additions=[FileAddition("model.safetensors", sha(data))])
    hub.upload([data], expected_sha256=sha(data), expected_size=len(data))  # the repair's bytes are held
    hub.commit("o/copy", "main", message="copy", additions=[FileAddition("model.safetensors", sha(data))])
    ingest_all(hub, unfinished(hub))
    assert verify(fresh(hub)).ok


def test_verify_says_a_repair_is_under_way_until_its_job_has_run(hub: Hub) -> None:
    data = to_safetensors(make_weights(13), "BF16")
    ingest_all(hub, push(hub, "o/m", {"model.safetensors": data}))
    damage_tensor(hub, sha(data), "layer.1.attn.weight")
    hub = fresh(hub)
    assert verify(hub).problems[0].repair.startswith("push o/m/model.safetensors again")
    hub.upload([data], expected_sha256=sha(data), expected_size=len(data))  # no queue: the job waits
    assert read_all(hub, sha(data)) == data  # from the pushed copy
    pending = verify(fresh(hub))
    assert [p.repair for p in pending.problems] == [
        "its bytes were pushed again and are served from that copy; the queued repair re-encodes them"
    ]
    ingest_all(hub, unfinished(hub))
    assert verify(fresh(hub)).ok


def test_a_sampled_verify_finds_the_files_delta_coded_against_what_it_found_damaged(hub: Hub) -> None:
    weights = make_weights(21)
    base, child = to_safetensors(weights, "BF16"), to_safetensors(finetune(weights, 22), "BF16")
    ingest_all(hub, push(hub, "o/base", {"model.safetensors": base}))
    ingest_all(hub, push(hub, "o/child", {"model.safetensors": child}))
    with hub.session() as s:
        assert s.get(FileObject, sha(child)).base_sha256 == sha(base)  # type: ignore[union-attr]
        mine = select(FileSegment.tensor_id).where(FileSegment.file_sha256 == sha(base))
        used = s.scalars(select(Tensor.base_tensor_id).where(Tensor.base_tensor_id.in_(mine))).first()
        name = s.scalar(select(FileSegment.name).where(FileSegment.tensor_id == used))
    assert name is not None
    damage_tensor(hub, sha(base), name)
    with hub.session() as s:
        shas = repos.all_file_shas(s)
    seed = next(n for n in range(1000) if random.Random(n).sample(shas, 1) == [sha(base)])
    report = verify(fresh(hub), sample=1, seed=seed)
    assert report.checked == 1
    found = {p.sha256: p for p in report.problems}
    assert set(found) == {sha(base), sha(child)}
    assert found[sha(child)].error == "holds a damaged tensor (found while verifying other files)"
    assert not hub.has_file(sha(child))
    # Pushing the base again repairs both.
    hub.upload([base], expected_sha256=sha(base), expected_size=len(base))
    results = [run_ingest(hub, job_id) for job_id in unfinished(hub)]
    assert [r.still_damaged for r in results if r is not None] == [[]]
    assert read_all(fresh(hub), sha(child)) == child
    assert verify(fresh(hub)).ok


def test_a_blob_stored_whole_before_chunking_is_repaired_as_it_was_cut(hub: Hub) -> None:
    """Blobs of 1 MiB or more are chunked now; one stored as a single segment by an earlier release
    parses into other segments today, and must still be repaired by pushing it again."""
    from storage.core.formats.base import FileLayout
    from storage.core.segments import opaque
    from tests.hubs import ingest_with_layout

    data = random.Random(4).randbytes(3 << 20)
    hub.create_repo("o/data")
    ingest_all(hub, unfinished(hub))
    info = hub.upload([data])
    hub.commit("o/data", "main", message="blob", additions=[FileAddition("shard.bin", info.sha256)])
    (job_id,) = unfinished(hub)
    ingest_with_layout(hub, job_id, lambda read, size: FileLayout("blob", size, (opaque(0, 0, size),), None))
    with hub.session() as s:
        (tensor_id,) = s.scalars(select(FileSegment.tensor_id).where(FileSegment.file_sha256 == info.sha256))
        frame = s.scalars(select(Frame).where(Frame.tensor_id == tensor_id).order_by(Frame.seq).limit(1)).one()
        key, position = frame.object_key, frame.object_offset + frame.object_length - 7
    blob = bytearray(hub.store.get(key))
    blob[position] ^= 0x40
    hub.store.put(key, bytes(blob))
    assert not verify(fresh(hub)).ok
    hub.upload([data], expected_sha256=info.sha256, expected_size=len(data))
    ingest_all(hub, unfinished(hub))
    assert verify(fresh(hub)).ok
    assert read_all(fresh(hub), info.sha256) == data
    with hub.session() as s:  # still the one segment it was stored as
        assert s.scalar(select(func.count()).select_from(FileSegment).where(
            FileSegment.file_sha256 == info.sha256)) == 1
