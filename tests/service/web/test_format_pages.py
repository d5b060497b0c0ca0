"""Every tensor format shows its tensors, a chunked blob its chunks, and a fine-tune in another format
(or with prefixed names) shows in its base's family, in a real browser on the shared web hub."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By

from service.web.render import human_bytes
from tests.models import LAYOUT
from tests.service.web.conftest import FORMAT_FILES, HOSTILE_GGUF_TENSOR, HOSTILE_TORCH_TENSOR, WebHub
from tests.service.web.test_pages import anonymous, attrs, model_sha, texts, visit

__all__ = ["anonymous"]  # the fixture, shared with test_pages

FORMAT_NAMES = {
    "model.gguf": [*LAYOUT, HOSTILE_GGUF_TENSOR],
    "pytorch_model.bin": [*(f"bert.{n}" for n in LAYOUT), HOSTILE_TORCH_TENSOR],
    "model.onnx": list(LAYOUT),
}


def test_each_tensor_format_lists_its_tensors_with_dtype_shape_and_counts(anonymous: Any, web_hub: WebHub) -> None:
    for repo, path in FORMAT_FILES.items():
        b = visit(anonymous, web_hub, f"/ui/models/{repo}/blob/main/{path}", f"file-{path.replace('.', '-')}")
        rows = b.find_elements(By.CSS_SELECTOR, "#tensors tr[data-tensor]")
        names = [r.get_attribute("data-tensor") for r in rows]
        assert sorted(names) == sorted(FORMAT_NAMES[path]), (path, names)
        by_name = {r.get_attribute("data-tensor"): [c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows}
        prefix = "bert." if path == "pytorch_model.bin" else ""
        cells = by_name[f"{prefix}embeddings.weight"]
        # GGUF lists dims fastest-first; the format gives them in numpy order, as the others do.
        assert cells[1] == "F32" and cells[2] == "[512, 64]", (path, cells)
        stats = " ".join(texts(b, ".stat"))
        assert f"{len(FORMAT_NAMES[path])} tensors" in stats, (path, stats)
        # A fine-tune of the safetensors base: its tensors are coded against the base's.
        assert "DELTA" in b.find_element(By.CSS_SELECTOR, ".stat .tag").text.upper(), (path, stats)
        assert "other bytes" in b.find_element(By.ID, "other-bytes").text
        visit(b, web_hub, f"/ui/models/{repo}")
        contents = b.find_element(By.CSS_SELECTOR, f'#files tr[data-path="{path}"] td.contents').text
        assert contents.startswith(f"{len(FORMAT_NAMES[path])} tensors"), (path, contents)


def test_a_quantized_gguf_tensor_is_a_row_of_its_bytes(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/base-gguf/blob/main/model.gguf")
    row = next(r for r in b.find_elements(By.CSS_SELECTOR, "#tensors tr[data-tensor]")
               if r.get_attribute("data-tensor") == HOSTILE_GGUF_TENSOR)
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    # Q8_0: 64x64 values in blocks of 32 at 34 bytes each, kept as those bytes (the catalog records no
    # ggml type for a quantized tensor: storage/core/formats/gguf.py stores it as U8).
    assert cells[0] == HOSTILE_GGUF_TENSOR and cells[1] == "U8", cells
    assert cells[3] == human_bytes(64 * 64 // 32 * 34), cells


def test_a_chunked_dataset_shows_its_chunks_and_how_many_were_deduplicated(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/dataset/blob/main/data.jsonl", "file-chunked")
    assert not b.find_elements(By.ID, "tensors")
    chunks, _, shared, _ = b.find_element(By.ID, "chunks").text.split(maxsplit=3)
    # ~4.4 MB in chunks of ~256 KiB; the appended version shares all but its last few with the first.
    assert 10 <= int(chunks) <= 30 and int(chunks) - 3 <= int(shared) < int(chunks), (chunks, shared)


def test_the_family_follows_recorded_edges_across_formats_and_prefixes(anonymous: Any, web_hub: WebHub) -> None:
    base = model_sha(web_hub, "org/base-model")
    family_id = next(f.id for f in web_hub.hub.browse.families() if f.root_sha256 == base)
    b = visit(anonymous, web_hub, f"/ui/families/{family_id}", "family-formats")
    edges = {(e.get_attribute("data-child"), e.get_attribute("data-base")): e.text
             for e in b.find_elements(By.CSS_SELECTOR, "svg.lineage g.edge")}
    for repo, path in FORMAT_FILES.items():
        key = (model_sha(web_hub, repo, path), base)
        assert key in edges, (repo, sorted(edges))
        assert edges[key].startswith("saves ") and not edges[key].startswith("saves 0 B"), (repo, edges[key])
    assert set(texts(b, "svg.lineage .node-label")) >= set(FORMAT_FILES)
    assert attrs(b, "svg.lineage a[data-node]", "data-node")
    # Each file shows in one family: the prefixed checkpoint's own fingerprint family is not a second home.
    torch_sha = model_sha(web_hub, "org/base-torch", FORMAT_FILES["org/base-torch"])
    homes = []
    for f in web_hub.hub.browse.families():
        found = web_hub.hub.browse.family(f.id)
        assert found is not None
        if torch_sha in {m.sha256 for m in found[1]}:
            homes.append(f.id)
    assert homes == [family_id]
