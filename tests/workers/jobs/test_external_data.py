"""Ingest of ONNX external data: a data file beside its model is cut into the model's tensors, so the
weights a safetensors twin holds store once; a model that lies about it leaves it a blob, byte-exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.catalog import plans
from storage.objectstore import ObjectStore
from tests.hubs import make_hub, push, read_all
from tests.models import make_weights, to_onnx, to_onnx_external, to_safetensors
from workers.jobs.ingest import IngestResult, run_ingest

pytest.importorskip("onnx")


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=64 << 10)


def ingested(hub: Hub, repo: str, files: dict[str, bytes]) -> dict[str, IngestResult]:
    results = [r for r in (run_ingest(hub, job) for job in push(hub, repo, files)) if r is not None]
    by_sha = {r.sha256: r for r in results}
    return {path: by_sha[sha(data)] for path, data in files.items() if sha(data) in by_sha}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_names(hub: Hub, data: bytes) -> set[str]:
    with hub.session() as s:
        return {seg.name for seg in plans.segments(s, sha(data)) if seg.name}


def test_an_external_data_file_beside_its_safetensors_twin_adds_under_two_percent(hub: Hub) -> None:
    weights = make_weights(1)
    model, data = to_onnx_external(weights)
    results = ingested(hub, "org/m", {"model.safetensors": to_safetensors(weights), "onnx/model.onnx": model,
                                      "onnx/model.onnx_data": data})  # fmt: skip
    stored = results["onnx/model.onnx_data"]
    assert stored.deduplicated_tensors == len(weights)
    assert stored.encoded_bytes < 0.02 * len(data)
    assert tensor_names(hub, data) == set(weights)
    assert read_all(hub, sha(data)) == data and read_all(hub, sha(model)) == model


def test_a_fine_tunes_external_data_is_delta_coded_against_the_base(hub: Hub) -> None:
    from tests.models import finetune

    base = make_weights(2)
    ingested(hub, "org/base", {"model.safetensors": to_safetensors(base)})
    model, data = to_onnx_external(finetune(base, 3))
    stored = ingested(hub, "org/tuned-onnx", {"model.onnx": model, "model.onnx_data": data})["model.onnx_data"]
    assert stored.delta_tensors == len(base) - stored.deduplicated_tensors > 0
    assert stored.encoded_bytes < 0.5 * len(data)
    assert read_all(hub, sha(data)) == data


def test_a_data_file_without_its_model_in_the_revision_stays_a_blob(hub: Hub) -> None:
    weights = make_weights(4)
    _, data = to_onnx_external(weights)
    ingested(hub, "org/only-data", {"model.onnx_data": data, "model.onnx": to_onnx(make_weights(5))})
    assert tensor_names(hub, data) == set()
    assert read_all(hub, sha(data)) == data


def relabelled(model: bytes, key: str, value: str) -> bytes:
    """The model with one external_data entry of its first initializer set to `value`."""
    import onnx

    proto = onnx.load_from_string(model)
    entries = proto.graph.initializer[0].external_data
    match = [e for e in entries if e.key == key]
    entry = match[0] if match else entries.add()
    entry.key, entry.value = key, value
    return bytes(proto.SerializeToString())


@pytest.mark.parametrize(("key", "value"), [("length", "8"), ("offset", "-4"), ("offset", "99999999")])
def test_a_model_that_lies_about_its_data_leaves_the_file_a_blob(hub: Hub, key: str, value: str) -> None:
    model, data = to_onnx_external(make_weights(6))
    ingested(hub, "org/lying", {"model.onnx": relabelled(model, key, value), "model.onnx_data": data})
    assert tensor_names(hub, data) == set()
    assert read_all(hub, sha(data)) == data
