"""Model-level families on real transformers output from the dev corpus's MiniLM base (slow; needs
DELTAHUB_CORPUS): a task head with prefixed names, added tokens and resharding find the base with no
declared base, delta-code what they share with it, and rebuild byte-exact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bench.shapes import build_shapes, weight_files
from storage.catalog import plans
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus or not (Path(corpus) / "minilm-fp32/base/model.safetensors").exists():
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    base = Path(corpus) / "minilm-fp32/base"
    return base, build_shapes(base, tmp_path_factory.mktemp("shapes"), steps=2, added_tokens=50)


def tensors_of(hub, data: bytes) -> dict[str, plans.TensorPlan]:  # type: ignore[no-untyped-def]
    with hub.session() as s:
        segs = plans.segments(s, hashlib.sha256(data).hexdigest())
        tp = plans.tensor_plans(s, {x.tensor_id for x in segs})
    return {x.name: tp[x.tensor_id] for x in segs if x.name and x.name != "__header__"}


@pytest.mark.parametrize("shape", ["task-head", "added-tokens", "resharded"])
def test_a_reshaped_fine_tune_finds_its_base_by_content(
    shape: str, shapes: tuple[Path, dict[str, Path]], tmp_path: Path, local_store: ObjectStore
) -> None:
    base_dir, dirs = shapes
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store)
    base = (base_dir / "model.safetensors").read_bytes()
    ingest_all(hub, push(hub, "minilm/base", {"model.safetensors": base}))
    base_ids = {p.id for p in tensors_of(hub, base).values()}
    files = {k: v for k, v in weight_files(dirs[shape]).items() if k.endswith((".safetensors", ".index.json"))}
    ingest_all(hub, push(hub, f"tuned/{shape}", files))  # no declared base: found by names and content
    for path, data in files.items():
        assert read_all(hub, hashlib.sha256(data).hexdigest()) == data, path
    tuned = {n: p for path, data in files.items() if path.endswith(".safetensors")
             for n, p in tensors_of(hub, data).items()}  # fmt: skip
    big = {n: p for n, p in tuned.items() if p.nbytes >= 1 << 16}
    against_base = [n for n, p in big.items() if p.base_id in base_ids]
    assert len(against_base) >= 0.9 * len(big), sorted(set(big) - set(against_base))
    for name, plan in tuned.items():
        if name.startswith("classifier."):
            assert plan.base_id is None, "a new head has no relative in the base"
    if shape == "added-tokens":
        grown = tuned["embeddings.word_embeddings.weight"]
        base_rows = tensors_of(hub, base)["embeddings.word_embeddings.weight"]
        assert grown.shape[0] == base_rows.shape[0] + 50 and grown.base_id == base_rows.id
        # The delta frames stay inside the rows the base holds; the new rows are coded alone.
        assert max(f.raw_end for f in grown.frames) == grown.nbytes
