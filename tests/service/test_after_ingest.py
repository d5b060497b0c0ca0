"""Reads through the service once the embedded worker has ingested uploads into reduced form."""

from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download

from storage.app.gitattributes import MODEL_GITATTRIBUTES
from tests.models import finetune, make_weights, to_safetensors
from tests.service.conftest import WRITE_TOKEN, RunningService


def test_ingested_models_download_byte_exact(ingesting_service: RunningService, tmp_path: Path) -> None:
    service = ingesting_service
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    base = make_weights(seed=1)
    models = {
        "alice/base": to_safetensors(base, metadata={"format": "pt"}),
        "alice/tuned": to_safetensors(finetune(base, seed=2), metadata={"format": "pt"}),
    }
    for repo_id, data in models.items():
        api.create_repo(repo_id)
        api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id=repo_id)
    service.hub.queue.wait(timeout=120)

    for repo_id, data in models.items():
        sha = hashlib.sha256(data).hexdigest()
        state = service.http.get(f"/api/v1/files/{sha}", headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
        assert state.json()["state"] == "stored", state.json()
        path = hf_hub_download(repo_id, "model.safetensors", endpoint=service.url, cache_dir=tmp_path / "c")
        assert Path(path).read_bytes() == data
        middle = len(data) // 2
        ranged = service.http.get(f"/{repo_id}/resolve/main/model.safetensors", headers={"Range": f"bytes={middle}-"})
        assert ranged.status_code == 206 and ranged.content == data[middle:]
        tensors = api.get_safetensors_metadata(repo_id).files_metadata["model.safetensors"].tensors
        assert set(tensors) == set(base)

    storage = service.http.get("/api/v1/stats").json()["storage"]
    # Each repository also holds the .gitattributes of its initial commit.
    assert storage["logical_bytes"] == sum(len(d) + len(MODEL_GITATTRIBUTES) for d in models.values())
    # The fine-tune is stored as a delta. (Ingested side by side, one of the two may have been stored
    # plain first and rebased after: its old frames are garbage until GC's grace period passes.)
    live = storage["physical_bytes"] - storage["breakdown"]["unreferenced_object_bytes"]
    assert live < storage["logical_bytes"]
    assert storage["savings"]["delta_coding"] > 0
