"""Push the real dev corpus through the unmodified client and pull it back byte-exact (slow)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download

from tests.service.conftest import WRITE_TOKEN, RunningService


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@pytest.mark.slow
def test_corpus_round_trips_through_the_client(service: RunningService, tmp_path: Path) -> None:
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

        local = Path(snapshot_download(repo_id, endpoint=service.url, cache_dir=tmp_path / "cache"))
        for name in model["files"]:
            assert _sha256(local / name) == _sha256(root / model["repo"] / name), (repo_id, name)
    # Files seen before (a shared tokenizer, an unchanged checkpoint) were not sent again.
    assert service.counters()["lfs_put_bytes"] == sum(unique_large.values())
