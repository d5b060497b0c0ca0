"""An ONNX export beside its safetensors twin: the MatMul initializers are the Linear weights transposed,
paired with them by measured closeness and delta-coded against the base read transposed (frame v3).

The model is a small BERT built here from a config (nothing is downloaded), exported by the real
`torch.onnx.export` (the TorchScript exporter: the default one needs onnxscript)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from bench.shapes import export_onnx
from storage.app.hub import Hub
from storage.app.reader import Reader
from storage.catalog import plans
from storage.core.errors import IntegrityError
from storage.core.frames import read_frame_header
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from workers.jobs.gc import collect_garbage
from workers.jobs.ingest import run_ingest
from workers.jobs.verify import verify

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnx")


def small_bert(tmp_path: Path, seed: int = 0) -> tuple[bytes, bytes]:
    """(model.safetensors, model.onnx) of one small BERT, its weights initialised from `seed`."""
    torch.manual_seed(seed)
    config = transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=512, vocab_size=1000)  # fmt: skip
    model = transformers.BertModel(config).eval()
    model.save_pretrained(tmp_path / "model")

    export_onnx(model, tmp_path / "model.onnx")
    return (tmp_path / "model/model.safetensors").read_bytes(), (tmp_path / "model.onnx").read_bytes()


def transposed_segments(plan: plans.FilePlan) -> list[plans.SegmentPlan]:
    """Segments whose tensor is a delta of a base of the transposed shape."""
    return [seg for seg in plan.segments if (t := plan.tensors[seg.tensor_id]).base_id is not None
            and len(t.shape) == 2 and plan.tensors[t.base_id].shape == t.shape[::-1]]  # fmt: skip


def ingest(hub: Hub, job_ids: list[int]) -> int:
    return sum(r.encoded_bytes for j in job_ids if (r := run_ingest(hub, j)) is not None)


def test_an_onnx_beside_its_safetensors_twin_adds_under_two_percent(tmp_path: Path, local_store: ObjectStore) -> None:
    safetensors_bytes, onnx_bytes = small_bert(tmp_path)
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingest_all(hub, push(hub, "org/model", {"model.safetensors": safetensors_bytes}))
    added = ingest(hub, push(hub, "org/model", {"model.onnx": onnx_bytes}))
    print(f"\nmodel.onnx: {len(onnx_bytes)} bytes, stores {added} new bytes ({added / len(onnx_bytes):.4%})")
    assert added < 0.02 * len(onnx_bytes)
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    with hub.session() as s:
        plan = plans.file_plan(s, sha)
    assert plan is not None
    flipped = transposed_segments(plan)
    # Every Linear of the two layers (q, k, v, attention output, intermediate, output) is transposed.
    assert len(flipped) == 12
    for seg in flipped:
        frame = plan.tensors[seg.tensor_id].frames[0]
        blob = hub.store.get(frame.object_key, frame.object_offset, frame.object_offset + frame.object_length)
        assert read_frame_header(blob).layout is not None
    assert read_all(hub, sha) == onnx_bytes
    # Range reads starting and ending inside transposed segments, and across several of them.
    first, last = flipped[0], flipped[-1]
    for start, end in ((first.offset + 7, first.end - 5), (first.offset + 3, last.offset + 101),
                       (first.end - 1, first.end + 1), (0, last.end)):  # fmt: skip
        assert read_all(hub, sha, start, end) == onnx_bytes[start:end]
    # GC keeps what a transposed delta reads (its base is referenced like any base); verify rebuilds it.
    collect_garbage(hub, grace_seconds=0)
    assert verify(hub).ok
    assert read_all(hub, sha) == onnx_bytes
    # The frame says which matrix it reads: a catalog whose base has another shape is damage.
    tensor = plan.tensors[first.tensor_id]
    assert tensor.base_id is not None
    wrong = dict(plan.tensors)
    wrong[tensor.base_id] = replace(wrong[tensor.base_id], shape=(1, wrong[tensor.base_id].nbytes // 4))
    with pytest.raises(IntegrityError, match="reads a"):
        Reader(hub.store, hub.sessions).read_tensor(wrong, tensor.id, 0, 16)
    hub.close()


def test_an_unrelated_onnx_is_not_paired_transposed(tmp_path: Path, local_store: ObjectStore) -> None:
    safetensors_bytes, _ = small_bert(tmp_path / "a")
    _, other = small_bert(tmp_path / "b", seed=1)  # the same architecture, other weights
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingest_all(hub, push(hub, "org/model", {"model.safetensors": safetensors_bytes}))
    ingest_all(hub, push(hub, "org/other", {"model.onnx": other}))
    sha = hashlib.sha256(other).hexdigest()
    with hub.session() as s:
        plan = plans.file_plan(s, sha)
    assert plan is not None
    # LayerNorm weights (ones) and biases (zeros) are equal in both and dedup; no weight pairs transposed.
    assert not transposed_segments(plan)
    assert read_all(hub, sha) == other
    hub.close()


@pytest.mark.slow
def test_the_dev_corpus_minilm_as_onnx_export_adds_under_two_percent(tmp_path: Path, local_store: ObjectStore) -> None:
    base = Path(os.environ.get("DELTAHUB_CORPUS", "/nonexistent")) / "minilm-fp32/base"
    if not (base / "model.safetensors").exists():
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")

    export_onnx(transformers.BertModel.from_pretrained(base), tmp_path / "model.onnx")
    data = (tmp_path / "model.onnx").read_bytes()
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingest_all(hub, push(hub, "org/minilm", {"model.safetensors": (base / "model.safetensors").read_bytes()}))
    added = ingest(hub, push(hub, "org/minilm", {"model.onnx": data}))
    print(f"\nMiniLM model.onnx: {len(data)} bytes, stores {added} new bytes ({added / len(data):.5f})")
    assert added < 0.02 * len(data)
    with hub.session() as s:
        plan = plans.file_plan(s, hashlib.sha256(data).hexdigest())
    assert plan is not None and len(transposed_segments(plan)) == 36
    assert read_all(hub, hashlib.sha256(data).hexdigest()) == data
    hub.close()
