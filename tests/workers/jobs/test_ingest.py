"""Ingest end to end on real backends: dedup, families, deltas, rebase, byte-exact reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.app.hub import Hub
from storage.catalog import plans
from storage.catalog.models import FileObject, StoreObject, Tensor
from storage.objectstore import ObjectStore
from tests.hubs import BACKENDS, backend_hub, ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs.gc import collect_garbage
from workers.jobs.ingest import run_ingest


@pytest.fixture(params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Hub:
    return backend_hub(request, tmp_path, frame_bytes=64 << 10, pack_target_bytes=256 << 10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_of(hub: Hub, file_sha: str) -> dict[str, plans.TensorPlan]:
    with hub.session() as s:
        segs = plans.segments(s, file_sha)
        tp = plans.tensor_plans(s, {x.tensor_id for x in segs}, with_bases=False)
    return {x.name: tp[x.tensor_id] for x in segs if x.name}


def count_rows(hub: Hub, model: type) -> int:
    with hub.session() as s:
        return s.query(model).count()


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_finetune_before_base_is_rebased_and_everything_reads_back(hub: Hub, dtype: str) -> None:
    base_w = make_weights(1)
    base = to_safetensors(base_w, dtype)
    tuned = to_safetensors(finetune(base_w, 2), dtype)
    config = b'{"_name_or_path": "org/base", "hidden_size": 64}'
    # The fine-tune arrives first, naming a base that does not exist yet.
    ingest_all(hub, push(hub, "org/tuned", {"model.safetensors": tuned, "config.json": config}))
    assert hub.file_info(sha(tuned)).state == "stored"
    assert all(t.base_id is None for t in tensors_of(hub, sha(tuned)).values())
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": base}))
    # The base was not delta-coded against its own fine-tune; the fine-tune was rebased onto it.
    assert all(t.base_id is None for t in tensors_of(hub, sha(base)).values())
    tuned_tensors = tensors_of(hub, sha(tuned))
    base_tensors = tensors_of(hub, sha(base))
    weights = [n for n in tuned_tensors if n != "__header__"]
    assert all(tuned_tensors[n].base_id == base_tensors[n].id for n in weights)
    for data in (base, tuned, config):
        assert read_all(hub, sha(data)) == data
    report = hub.stats()
    assert report["savings"]["delta_coding"] > 0
    # The fine-tune's plain frames from before the rebase are garbage until GC collects them: it rewrites
    # the packs they sit in with only the live frames, then frees the emptied packs (at once: grace 0).
    before = report["physical_bytes"]
    assert collect_garbage(hub, grace_seconds=0).repacked > 0
    report = hub.stats()
    assert report["breakdown"]["unreferenced_object_bytes"] == 0
    assert report["physical_bytes"] < before
    assert report["physical_bytes"] < report["logical_bytes"]
    for data in (base, tuned, config):
        assert read_all(hub, sha(data)) == data


def test_nearest_relative_wins_and_unrelated_is_plain(hub: Hub) -> None:
    base_w = make_weights(1)
    child_w = finetune(base_w, 2, scale=1e-2)
    grandchild_w = finetune(child_w, 3, scale=1e-4)
    unrelated_w = make_weights(99)
    files = {name: to_safetensors(w) for name, w in
             [("base", base_w), ("child", child_w), ("grandchild", grandchild_w), ("unrelated", unrelated_w)]}
    for name, data in files.items():
        ingest_all(hub, push(hub, f"org/{name}", {"model.safetensors": data}))
    with hub.session() as s:
        base_of = {name: s.get(FileObject, sha(data)).base_sha256 for name, data in files.items()}
    assert base_of["grandchild"] == sha(files["child"])
    assert base_of["unrelated"] is None
    for data in files.values():
        assert read_all(hub, sha(data)) == data


def test_lower_precision_release_is_predicted_from_the_f32_model(hub: Hub) -> None:
    w = make_weights(8)
    f32, bf16 = to_safetensors(w, "F32"), to_safetensors(w, "BF16")
    tuned_bf16 = to_safetensors(finetune(w, 9), "BF16")
    ingest_all(hub, push(hub, "m/f32", {"model.safetensors": f32}))
    ingest_all(hub, push(hub, "m/bf16", {"model.safetensors": bf16}))
    ingest_all(hub, push(hub, "m/tuned-bf16", {"model.safetensors": tuned_bf16}))
    f32_tensors, bf16_tensors = tensors_of(hub, sha(f32)), tensors_of(hub, sha(bf16))
    weights = [n for n in bf16_tensors if n != "__header__"]
    assert all(bf16_tensors[n].base_id == f32_tensors[n].id for n in weights)
    encoded = sum(f.object_length for n in weights for f in bf16_tensors[n].frames)
    assert encoded < len(bf16) / 50  # the rounding predicts nearly every bit
    for data in (f32, bf16, tuned_bf16):
        assert read_all(hub, sha(data)) == data
        assert read_all(hub, sha(data), 1001, 30_000) == data[1001:30_000]


def test_dedup_and_idempotence(hub: Hub) -> None:
    w = make_weights(5)
    data = to_safetensors(w)
    partly_same = to_safetensors(finetune(w, 6, frozen=("embeddings.weight", "layer.0.mlp.weight")))
    jobs = push(hub, "a/one", {"model.safetensors": data})
    ingest_all(hub, jobs)
    objects, tensors = count_rows(hub, StoreObject), count_rows(hub, Tensor)
    # The same file in another repository: nothing new is stored, no job is even queued.
    assert push(hub, "b/two", {"weights.safetensors": data}) == []
    # Running a finished job again stores nothing twice.
    assert run_ingest(hub, jobs[0]) is None
    assert (count_rows(hub, StoreObject), count_rows(hub, Tensor)) == (objects, tensors)
    ingest_all(hub, push(hub, "c/three", {"model.safetensors": partly_same}))
    mine = tensors_of(hub, sha(partly_same))
    theirs = tensors_of(hub, sha(data))
    assert mine["embeddings.weight"].id == theirs["embeddings.weight"].id
    assert read_all(hub, sha(partly_same)) == partly_same
    # The copy of `data` in b/two, and the initial .gitattributes b/two and c/three share with a/one.
    gitattributes = hub.get_entry("a/one", hub.resolve("a/one", "main").oid, ".gitattributes").file.size
    assert hub.stats()["savings"]["file_dedup"] == len(data) + 2 * gitattributes


def test_non_safetensors_files_are_compressed_and_exact(hub: Hub) -> None:
    text = b"".join(b"token%d\n" % i for i in range(20000))
    odd = bytes(range(256)) * 7 + b"\x00"
    ingest_all(hub, push(hub, "x/tok", {"vocab.txt": text, "weird.bin": odd, "empty": b""}))
    for data in (text, odd, b""):
        assert read_all(hub, sha(data)) == data
    stored = hub.stats()["breakdown"]["plain_tensors_encoded_bytes"]
    assert stored < len(text) / 3


def test_staged_file_is_readable_before_ingest(hub: Hub) -> None:
    data = to_safetensors(make_weights(7), "BF16")
    jobs = push(hub, "x/y", {"model.safetensors": data})
    assert hub.file_info(sha(data)).state == "staged"
    assert read_all(hub, sha(data), 100, 5000) == data[100:5000]
    ingest_all(hub, jobs)
    assert hub.file_info(sha(data)).state == "stored"
    assert read_all(hub, sha(data), 100, 5000) == data[100:5000]


def test_chain_depth_is_bounded(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, max_chain_depth=2,
                   frame_bytes=64 << 10)
    w = make_weights(11)
    lineage = []
    for step in range(5):
        w = finetune(w, 100 + step, scale=1e-3)
        data = to_safetensors(w, "BF16")
        lineage.append(data)
        ingest_all(hub, push(hub, f"chain/step{step}", {"model.safetensors": data}))
    with hub.session() as s:
        assert max(t.chain_depth for t in s.query(Tensor)) <= 2
    for data in lineage:
        assert read_all(hub, sha(data)) == data


class Stored:
    """A hub holding one delta-coded file (with a short repr for hypothesis reports)."""

    def __init__(self, hub: Hub, data: bytes) -> None:
        self.hub, self.data = hub, data

    def __repr__(self) -> str:
        return f"Stored({len(self.data)} bytes)"


@given(bounds=st.tuples(st.integers(0, 160_000), st.integers(0, 160_000)))
def test_any_byte_range_reads_exactly(stored_finetune: Stored, bounds: tuple[int, int]) -> None:
    start, end = sorted(bounds)
    data = stored_finetune.data
    assert read_all(stored_finetune.hub, sha(data), start, end) == data[start:end]


@pytest.fixture(scope="module")
def stored_finetune(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    from storage.objectstore.local import LocalObjectStore

    tmp = tmp_path_factory.mktemp("ranges")
    hub = make_hub(tmp, f"sqlite:///{tmp / 'c.sqlite3'}", LocalObjectStore(tmp / "objects"), frame_bytes=16 << 10)
    w = make_weights(21)
    ingest_all(hub, push(hub, "r/base", {"model.safetensors": to_safetensors(w, "BF16")}))
    data = to_safetensors(finetune(w, 22), "BF16")
    ingest_all(hub, push(hub, "r/tuned", {"model.safetensors": data}))
    return Stored(hub, data)


def test_bad_bytes_fail_at_once_and_are_never_served(hub: Hub) -> None:
    from storage.core.blocksums import CorruptStagedFile
    from storage.core.errors import InvalidInput

    data = to_safetensors(make_weights(12))
    jobs = push(hub, "bad/model", {"model.safetensors": data})
    with hub.session() as s:
        key = s.get(FileObject, sha(data)).staging_key
    # The staged bytes no longer parse (a disk fault): retrying cannot help, so the first attempt is final.
    garbage = b"\xff" * len(data)
    hub.store.put(key, garbage)
    with pytest.raises(InvalidInput):
        run_ingest(hub, jobs[0])
    info = hub.file_info(sha(data))
    assert info.state == "failed" and "header length" in (info.error or "")
    # Staged bytes that changed after their upload fail their block checksums: no wrong byte is served.
    with pytest.raises(CorruptStagedFile):
        read_all(hub, sha(data))


def test_relatives_ingested_at_the_same_time_still_meet(hub: Hub) -> None:
    """Two relatives ingested concurrently cannot see each other when they choose a base; whichever
    finishes, the family settles with one delta-coded against the other (never both: no cycle)."""
    from concurrent.futures import ThreadPoolExecutor

    w = make_weights(30)
    first, second = to_safetensors(w, "BF16"), to_safetensors(finetune(w, 31), "BF16")
    jobs = push(hub, "c/first", {"model.safetensors": first}) + push(hub, "c/second", {"model.safetensors": second})
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: run_ingest(hub, job), jobs))
    with hub.session() as s:
        bases = {s.get(FileObject, sha(d)).base_sha256 for d in (first, second)}
    assert bases in ({None, sha(first)}, {None, sha(second)})
    for data in (first, second):
        assert read_all(hub, sha(data)) == data


def test_small_tensors_share_packs_that_walk_without_the_catalog(hub: Hub) -> None:
    from storage.catalog.models import Frame
    from storage.core.frames import read_frame_header
    from storage.core.packs import iter_pack

    data = to_safetensors(make_weights(40))
    ingest_all(hub, push(hub, "p/model", {"model.safetensors": data}))
    with hub.session() as s:
        frames = s.query(Frame).count()
        packs = [o.key for o in s.query(StoreObject) if o.kind == "pack"]
    # 8 segments (header + 7 tensors) in frames of at most 64 KiB: far fewer packs than frames.
    assert frames >= 8 and 1 <= len(packs) < frames / 2
    walked = 0
    for key in packs:
        blob = hub.store.get(key)
        for offset, length in iter_pack(blob):
            read_frame_header(blob[offset : offset + length])  # exactly one intact frame
            walked += 1
    assert walked == frames
    assert read_all(hub, sha(data)) == data
