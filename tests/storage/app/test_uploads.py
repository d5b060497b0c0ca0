"""Uploads stream bytes and record block sums; the header is parsed later (issue 12, defect 11)."""

from __future__ import annotations

import json
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import damage, jobs
from storage.catalog.models import FileObject
from storage.core.formats.safetensors import HeaderNotJson, TooManyTensors
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, read_all

LIMIT = 1000


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'catalog.sqlite3'}", local_store, max_header_tensors=LIMIT)


def many_tensors(count: int) -> bytes:
    header = json.dumps({f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(count)})
    return struct.pack("<Q", len(header)) + header.encode() + bytes(count)


def unfinished(hub: Hub) -> list[int]:
    with hub.session() as s:
        return jobs.unfinished_jobs(s)


def test_an_upload_only_sniffs_so_a_broken_header_is_accepted_until_a_commit_names_it(hub: Hub) -> None:
    broken = struct.pack("<Q", 8) + b'{"a": }x'
    info = hub.upload([broken])  # parsing here would raise HeaderNotJson
    assert (info.kind, info.state) == ("safetensors", "staged")
    hub.create_repo("a/b")
    with pytest.raises(HeaderNotJson):
        hub.commit("a/b", "main", message="m", additions=[FileAddition("model.safetensors", info.sha256)])


def test_a_header_over_the_tensor_limit_is_refused_at_commit_and_kept_as_bytes_elsewhere(hub: Hub) -> None:
    data = many_tensors(LIMIT * 20)
    started = time.perf_counter()
    info = hub.upload([data])
    assert info.kind == "safetensors" and time.perf_counter() - started < 5
    hub.create_repo("a/b")
    ingest_all(hub, unfinished(hub))
    with pytest.raises(TooManyTensors) as refused:
        hub.commit("a/b", "main", message="m", additions=[FileAddition("model.safetensors", info.sha256)])
    assert refused.value.message == f"header lists {LIMIT * 20} tensors, more than the limit of {LIMIT}"
    assert refused.value.status == 400
    # At another path the bytes are just bytes: ingest finds they are no safetensors file it accepts.
    hub.commit("a/b", "main", message="m", additions=[FileAddition("weights.bin", info.sha256)])
    ingest_all(hub, unfinished(hub))
    stored = hub.file_info(info.sha256)
    assert (stored.kind, stored.state) == ("blob", "stored")
    assert read_all(hub, info.sha256) == data


def test_a_header_at_the_limit_is_stored_as_tensors(hub: Hub) -> None:
    data = many_tensors(LIMIT)
    info = hub.upload([data])
    hub.create_repo("a/b")
    hub.commit("a/b", "main", message="m", additions=[FileAddition("model.safetensors", info.sha256)])
    ingest_all(hub, unfinished(hub))
    assert hub.file_info(info.sha256).kind == "safetensors"
    assert read_all(hub, info.sha256) == data


def test_claiming_held_files_restarts_their_grace_and_leaves_out_damaged_and_unknown_ones(hub: Hub) -> None:
    # A "held" answer is a promise to the uploader, who commits without sending the bytes.
    infos = [hub.upload([f"file {n}".encode()]) for n in range(3)]
    kept, damaged, unknown = infos[0].sha256, infos[1].sha256, "0" * 64
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    with hub.session() as s:
        for info in infos:
            s.get(FileObject, info.sha256).claimed_at = long_ago
        damage.record_file(s, damaged, "verify: frame 0 does not match its CRC-32")
    assert hub.claim_held([kept, damaged, unknown, kept]) == {kept}
    with hub.session() as s:
        claimed = {i.sha256: s.get(FileObject, i.sha256).claimed_at for i in infos}
    assert claimed[kept] is not None and claimed[kept] > long_ago
    assert claimed[damaged] == long_ago and claimed[infos[2].sha256] == long_ago
    assert hub.file_sizes([kept, unknown]) == {kept: len(b"file 0")}
