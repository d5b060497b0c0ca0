"""The browse queries on each catalog backend: tensor counts for every tensor format, chunk counts for
blobs, families that follow the recorded delta edges, each in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from storage.app.hub import Hub
from storage.catalog import browse
from tests.hubs import BACKENDS, backend_hub, ingest_all, push
from tests.models import DATASET_ROWS, LAYOUT, dataset, finetune, make_weights, to_safetensors, to_torch


@pytest.fixture(params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Hub:
    return backend_hub(request, tmp_path, frame_bytes=64 << 10)


@contextmanager
def counted(hub: Hub) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(hub.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(hub.engine, "before_cursor_execute", record)


def sha_of(hub: Hub, repo: str, path: str) -> str:
    return hub.get_entry(repo, hub.resolve(repo, "main").oid, path).file.sha256


def family_of(hub: Hub, root_sha: str) -> tuple[list[browse.FamilyMember], list[str]]:
    """The members of the family rooted at `root_sha`, and the statements reading them took."""
    with hub.session() as s:
        family_id = next(f.id for f in browse.families(s) if f.root_sha256 == root_sha)
    with hub.session() as s, counted(hub) as statements:
        found = browse.family(s, family_id)
    assert found is not None
    return found[1], statements


def test_a_prefixed_torch_fine_tune_counts_its_tensors_and_shows_under_its_safetensors_base(hub: Hub) -> None:
    base = make_weights(1)
    ingest_all(hub, push(hub, "org/base", {"model.safetensors": to_safetensors(base)}))
    head_file = to_torch(finetune(base, 2), prefix="bert.", extra="classifier.bias")
    ingest_all(hub, push(hub, "org/head", {"pytorch_model.bin": head_file}, declared_base="org/base"))
    base_sha, head_sha = sha_of(hub, "org/base", "model.safetensors"), sha_of(hub, "org/head", "pytorch_model.bin")
    with hub.session() as s:
        stored = browse.file_storage(s, [base_sha, head_sha])
        assert stored[base_sha].tensors == len(LAYOUT) and stored[base_sha].chunks == 0
        head = stored[head_sha]
        assert head.kind == "torchzip" and head.tensors == len(LAYOUT) + 1 and head.base_sha256 == base_sha
        assert 0 < head.other_bytes < head.size and head.delta_tensors > 0
        homes = {f.id: f.members for f in browse.families(s)}
    members_of, statements = family_of(hub, base_sha)
    members = {m.sha256: m for m in members_of}
    assert set(members) == {base_sha, head_sha} and members[head_sha].saved_vs_base > 0
    # The head's own fingerprint family (its names carry `bert.`) holds nothing of its own.
    assert sum(homes.values()) == 2
    # Two more members (one in each format) cost no more queries: the closure is one recursive query.
    head2 = to_torch(finetune(base, 3), prefix="bert.")
    ingest_all(hub, push(hub, "org/head2", {"pytorch_model.bin": head2}, declared_base="org/base"))
    ingest_all(hub, push(hub, "org/ft", {"model.safetensors": to_safetensors(finetune(base, 4))},
                         declared_base="org/base"))
    grown, again = family_of(hub, base_sha)
    assert len(grown) == 4
    assert len(again) == len(statements), (len(again), len(statements))


def test_a_chunked_blob_counts_its_chunks_and_those_another_version_shares(hub: Hub) -> None:
    v1 = dataset(DATASET_ROWS)
    ingest_all(hub, push(hub, "org/data", {"data.jsonl": v1}))
    ingest_all(hub, push(hub, "org/data", {"data.jsonl": v1 + dataset(DATASET_ROWS // 10, seed=1)}))
    sha = sha_of(hub, "org/data", "data.jsonl")
    with hub.session() as s, counted(hub) as statements:
        f = browse.file_storage(s, [sha])[sha]
    assert f.kind == "blob" and f.tensors == 0 and f.other_bytes == 0
    assert f.chunks >= 10 and f.chunks - 3 <= f.shared_chunks < f.chunks, (f.chunks, f.shared_chunks)
    assert len(statements) == 4, statements
