"""Push the real dev corpus through the unmodified client and pull it back byte-exact (slow)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, RepoFile, snapshot_download

from tests.service.conftest import WRITE_TOKEN, RunningService


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@pytest.mark.slow
def test_corpus_round_trips_through_the_client(
    ingesting_service: RunningService, tmp_path: Path, lfs_client: None
) -> None:
    """Each model is pulled back twice: straight after its push (from staging) and after ingest.

    Through LFS, whose byte counter this checks (the Xet path runs the corpus in
    tests/integration/test_xet_deployments.py)."""
    service = ingesting_service
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus:
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    root = Path(corpus)
    models = json.loads((root / "corpus.json").read_text())["models"]
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    unique_large: dict[str, int] = {}
    for model in models:
        namespace, _, rest = model["repo"].partition("/")
        repo_id = f"{namespace}/{rest.replace('/', '-')}"
        api.create_repo(repo_id)
        api.upload_folder(folder_path=root / model["repo"], repo_id=repo_id, allow_patterns=model["files"])
        for name in model["files"]:
            path = root / model["repo"] / name
            if path.stat().st_size > service.app.state.deltahub.options.regular_file_max_bytes:
                unique_large[_sha256(path)] = path.stat().st_size

        _check_snapshot(service, repo_id, root / model["repo"], model["files"], tmp_path / "before")
    # Files seen before (a shared tokenizer, an unchanged checkpoint) were not sent again.
    assert service.counters()["lfs_put_bytes"] == sum(unique_large.values())

    service.hub.queue.wait(timeout=1800)
    states = {f["state"] for f in _files(service)}
    assert states == {"stored"}, states
    for model in models:
        namespace, _, rest = model["repo"].partition("/")
        repo_id = f"{namespace}/{rest.replace('/', '-')}"
        _check_snapshot(service, repo_id, root / model["repo"], model["files"], tmp_path / "after")
    storage = service.http.get("/api/v1/stats").json()["storage"]
    print(f"corpus via the API: {storage['logical_bytes']} logical, {storage['physical_bytes']} physical bytes")


def _check_snapshot(service: RunningService, repo_id: str, source: Path, files: list[str], cache: Path) -> None:
    local = Path(snapshot_download(repo_id, endpoint=service.url, cache_dir=cache))
    for name in files:
        assert _sha256(local / name) == _sha256(source / name), (repo_id, name)


def _files(service: RunningService) -> list[dict]:
    """Every file of every repository, with its ingest state (the tree is paged: the client follows)."""
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    auth = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    shas: set[str] = set()
    for repo in service.http.get("/api/v1/repos", headers=auth).json():
        tree = api.list_repo_tree(repo["repo_id"], recursive=True)
        shas |= {entry.lfs.sha256 for entry in tree if isinstance(entry, RepoFile) and entry.lfs}
    return [service.http.get(f"/api/v1/files/{sha}", headers=auth).json() for sha in shas]
