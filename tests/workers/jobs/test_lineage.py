"""Lineage: a new file's base is measured among its family, recorded, and delta-coded against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.app.staging import read_staged_layout, staged_reader
from storage.catalog import files, plans
from storage.core.frames import read_frame_header
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors
from workers.jobs import lineage


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=16 << 10)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged_choice(hub: Hub, data: bytes) -> lineage.BaseTensors | None:
    with hub.session() as s:
        snap = files.snapshot(s, sha(data))
    assert snap.staging_key is not None
    layout = read_staged_layout(hub.store, snap.staging_key, snap.kind, snap.size, hub.settings.max_header_bytes)
    return lineage.choose_base(hub, sha(data), layout, staged_reader(hub.store, snap.staging_key), repo_id=None)


def test_the_nearest_relative_is_chosen_and_a_stranger_never(hub: Hub) -> None:
    base_w = make_weights(10)
    base = to_safetensors(base_w)
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": base}))
    tuned, stranger = to_safetensors(finetune(base_w, 11)), to_safetensors(make_weights(12))
    push(hub, "org/tuned", {"model.safetensors": tuned})
    push(hub, "org/stranger", {"model.safetensors": stranger})
    chosen = staged_choice(hub, tuned)
    assert chosen is not None and chosen.sha256 == sha(base) and chosen.score < 0.9
    assert staged_choice(hub, stranger) is None


def test_a_bf16_release_is_coded_against_its_f32_twin_through_recorded_casts(hub: Hub) -> None:
    weights = make_weights(20)
    f32, bf16 = to_safetensors(weights, "F32"), to_safetensors(weights, "BF16")
    ingest_all(hub, push(hub, "org/model", {"model.safetensors": f32}))
    ingest_all(hub, push(hub, "org/model-bf16", {"model.safetensors": bf16}))
    assert hub.file_info(sha(bf16)).state == "stored"
    with hub.session() as s:
        segs = plans.segments(s, sha(bf16))
        tensors = plans.tensor_plans(s, {x.tensor_id for x in segs})
    deltas = [tensors[x.tensor_id] for x in segs if x.name != "__header__" and tensors[x.tensor_id].base_id]
    assert deltas, "the BF16 release was not delta-coded against its F32 twin"
    for tensor in deltas:
        assert tensors[tensor.base_id].dtype == "F32"  # type: ignore[index]
        frame = tensor.frames[0]
        header = read_frame_header(hub.store.get(frame.object_key, frame.object_offset,
                                                 frame.object_offset + frame.object_length))  # fmt: skip
        assert (header.version, header.base_dtype) == (2, "F32")
    assert read_all(hub, sha(bf16)) == bf16


def test_settle_rereads_a_stored_file_through_its_format(hub: Hub) -> None:
    base_w = make_weights(30)
    tuned = to_safetensors(finetune(base_w, 31))
    ingest_all(hub, push(hub, "org/tuned", {"model.safetensors": tuned}))
    base = to_safetensors(base_w)
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": base}))
    # The base arrived later and stored alone; settling finds the fine-tune already there.
    with hub.session() as s:
        tuned_base = files.snapshot(s, sha(tuned)).base_sha256
        base_base = files.snapshot(s, sha(base)).base_sha256
    assert sha(base) in (tuned_base, base_base) or sha(tuned) in (tuned_base, base_base)
    assert read_all(hub, sha(tuned)) == tuned and read_all(hub, sha(base)) == base
