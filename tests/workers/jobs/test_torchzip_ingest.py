"""PyTorch checkpoints on a hub: a `.bin` beside its safetensors twin dedups tensor by tensor, a training
series delta-codes checkpoint against checkpoint, and files stored as member spans (before storages
were parsed) still read back. Uses the dev corpus's MiniLM base and geatnet series when DELTAHUB_CORPUS
is set, and small models made here otherwise."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.catalog import plans
from storage.core.formats import torchzip
from storage.core.formats.base import FileLayout, ReadRange
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, ingest_with_layout, make_hub, push, read_all
from workers.jobs.ingest import run_ingest

torch = pytest.importorskip("torch")
CORPUS = Path(os.environ.get("DELTAHUB_CORPUS", "/nonexistent"))
LIMIT = 100_000_000


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def segments_of(hub: Hub, data: bytes) -> list[plans.SegmentPlan]:
    with hub.session() as s:
        return list(plans.segments(s, hashlib.sha256(data).hexdigest()))


def ingest(hub: Hub, job_ids: list[int]) -> int:
    """Encoded bytes the jobs wrote."""
    return sum(r.encoded_bytes for j in job_ids if (r := run_ingest(hub, j)) is not None)


def minilm(tmp_path: Path) -> tuple[bytes, bytes]:
    """(model.safetensors, pytorch_model.bin) of one model: the dev corpus's MiniLM, or a small BERT."""
    transformers = pytest.importorskip("transformers")
    base = CORPUS / "minilm-fp32/base"
    if (base / "model.safetensors").exists():
        model = transformers.BertModel.from_pretrained(base)
    else:
        config = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=128, vocab_size=2000)  # fmt: skip
        model = transformers.BertModel(config)
    model.save_pretrained(tmp_path / "model")
    # What save_pretrained(safe_serialization=False) wrote before transformers 5 dropped the option:
    # torch.save of the state dict, in an archive named after the file.
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    return (tmp_path / "model/model.safetensors").read_bytes(), (tmp_path / "pytorch_model.bin").read_bytes()


def test_a_bin_beside_its_safetensors_twin_adds_under_two_percent(tmp_path: Path, local_store: ObjectStore) -> None:
    safetensors_bytes, bin_bytes = minilm(tmp_path)
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    ingest_all(hub, push(hub, "org/model", {"model.safetensors": safetensors_bytes}))
    added = ingest(hub, push(hub, "org/model", {"pytorch_model.bin": bin_bytes}))
    print(f"\npytorch_model.bin: {len(bin_bytes)} bytes, stores {added} new bytes ({added / len(bin_bytes):.4%})")
    assert added < 0.02 * len(bin_bytes)
    twin = {s.name: s.tensor_id for s in segments_of(hub, safetensors_bytes) if s.name != "__header__"}
    tensors = {s.name: s.tensor_id for s in segments_of(hub, bin_bytes) if s.name is not None}
    assert tensors and tensors == {n: twin[n] for n in tensors}  # the same tensors, stored once
    assert read_all(hub, hashlib.sha256(bin_bytes).hexdigest()) == bin_bytes
    assert read_all(hub, hashlib.sha256(bin_bytes).hexdigest(), 1000, 500_000) == bin_bytes[1000:500_000]


def series(tmp_path: Path) -> list[bytes]:
    """A training series: the dev corpus's geatnet epochs, or a small model trained between saves."""
    found = sorted(CORPUS.glob("series/geatnet-atomprop/epoch_*/*.pth"))
    if found:
        return [p.read_bytes() for p in found]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    out = []
    for epoch in range(4):
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.randn(32, 64)).pow(2).mean().backward()
            optimizer.step()
        out.append(saved({"epoch": epoch, "model_state_dict": model.state_dict(),
                          "optimizer_state_dict": optimizer.state_dict()}))  # fmt: skip
    return out


def test_a_training_series_delta_codes_checkpoint_against_checkpoint(
    tmp_path: Path, database_url: str, local_store: ObjectStore
) -> None:
    epochs = series(tmp_path)
    hub = make_hub(tmp_path, database_url, local_store)
    stored = [ingest(hub, push(hub, f"run/epoch-{i}", {"checkpoint.pth": data})) for i, data in enumerate(epochs)]
    before = make_hub(tmp_path / "before", f"sqlite:///{tmp_path / 'before.sqlite3'}", local_store)
    spans = [sum(ingest_with_layout(before, j, _member_spans) for j in push(before, f"run/epoch-{i}", {"c.pth": d}))
             for i, d in enumerate(epochs)]  # fmt: skip
    logical = sum(map(len, epochs))
    print(f"\n{len(epochs)} checkpoints, {logical} bytes: stored {sum(stored)} ({sum(stored) / logical:.3f}) "
          f"as tensors, {sum(spans)} ({sum(spans) / logical:.3f}) as member spans")  # fmt: skip
    for data in epochs[1:]:
        info = hub.file_info(hashlib.sha256(data).hexdigest())
        assert info.state == "stored"
        deltas = [s for s in segments_of(hub, data) if s.name is not None]
        with hub.session() as s:
            tensor_plans = plans.tensor_plans(s, {x.tensor_id for x in deltas})
        assert any(p.base_id for p in tensor_plans.values()), "later epochs are delta-coded against earlier ones"
    assert sum(stored[1:]) < 0.9 * sum(spans[1:])
    for data in epochs:
        assert read_all(hub, hashlib.sha256(data).hexdigest()) == data


def _member_spans(read: ReadRange, size: int) -> FileLayout:
    return torchzip.member_spans(read, size, max_header_bytes=LIMIT)


def test_a_file_stored_as_member_spans_still_reads_back_and_serves_as_no_base(
    tmp_path: Path, database_url: str, local_store: ObjectStore
) -> None:
    """Files stored before storages were parsed keep their catalog segments (one opaque span per
    member); they rebuild from those, and a parsed file of the same tensors stores beside them."""
    state = {"w": torch.randn(64, 64), "b": torch.randn(64)}
    data = saved(state)
    hub = make_hub(tmp_path, database_url, local_store, frame_bytes=4096)
    (job,) = push(hub, "org/old", {"pytorch_model.bin": data})
    ingest_with_layout(hub, job, _member_spans)
    sha = hashlib.sha256(data).hexdigest()
    old = segments_of(hub, data)
    assert all(s.name is None for s in old)
    members = len(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert len(old) == len(_member_spans(lambda a, b: data[a:b], len(data)).segments) == members + 1
    assert read_all(hub, sha) == data and read_all(hub, sha, 700, 9000) == data[700:9000]
    assert hub.file_info(sha).kind == "torchzip"
    # A new upload of the same weights is parsed, and reads back beside the old one.
    newer = saved({"w": state["w"] + 1e-4, "b": state["b"]})
    ingest_all(hub, push(hub, "org/new", {"pytorch_model.bin": newer}))
    assert {s.name for s in segments_of(hub, newer)} >= {"w", "b"}
    assert read_all(hub, hashlib.sha256(newer).hexdigest()) == newer and read_all(hub, sha) == data
