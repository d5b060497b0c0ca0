"""Golden xorbs and shards captured from the real hf_xet client must keep parsing, and every hash in
them must be what the client computed: each file is rebuilt from the golden xorbs and checked against
the client's report (file hash, size, SHA-256) and against our own chunker and hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storage.core.xet.chunking import chunks_of
from storage.core.xet.hashing import chunk_hash, file_hash, hash_to_hex, hex_to_hash
from storage.core.xet.reconstruction import check_file, check_sha256, chunks_by_xorb, resolve_terms
from storage.core.xet.shard import parse_shard, serialize_shard
from storage.core.xet.xorb import Compression, Xorb, parse_xorb

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])


def _xorbs(name: str) -> dict[bytes, Xorb]:
    declared = MANIFEST["cases"][name]["xorbs"]
    parsed = {}
    for path in sorted(GOLDEN.glob(f"{name}.*.xorb")):
        (url_hash,) = [full for full in declared if full.startswith(path.name.split(".")[1])]
        xorb = parse_xorb(path.read_bytes(), hex_to_hash(url_hash))
        parsed[xorb.hash] = xorb
    assert len(parsed) == len(declared)
    return parsed


def _shards(name: str) -> list[bytes]:
    count = MANIFEST["cases"][name]["shards"]
    return [(GOLDEN / f"{name}.{index}.shard").read_bytes() for index in range(count)]


def test_every_scheme_is_covered() -> None:
    schemes = {scheme for name in CASES for xorb in _xorbs(name).values() for scheme in xorb.schemes}
    assert schemes == set(Compression)


@pytest.mark.parametrize("name", CASES)
def test_shards_reserialize_byte_for_byte(name: str) -> None:
    for data in _shards(name):
        assert serialize_shard(parse_shard(data)) == data


@pytest.mark.parametrize("name", CASES)
def test_shard_lists_the_xorbs_as_they_are(name: str) -> None:
    xorbs = _xorbs(name)
    for data in _shards(name):
        listed = chunks_by_xorb(parse_shard(data))
        assert listed == {digest: xorb.chunk_refs() for digest, xorb in xorbs.items()}


@pytest.mark.parametrize("name", CASES)
def test_files_rebuild_to_what_the_client_reported(name: str) -> None:
    xorbs = _xorbs(name)
    refs = {digest: xorb.chunk_refs() for digest, xorb in xorbs.items()}
    data_by_hash = {chunk.hash: chunk.data for xorb in xorbs.values() for chunk in xorb.chunks}
    entries = {entry.file_hash: entry for data in _shards(name) for entry in parse_shard(data).files}
    for report in MANIFEST["cases"][name]["files"]:
        entry = entries[hex_to_hash(report["hash"])]
        check_file(entry, refs)
        chunks = [digest for term in resolve_terms(entry, refs) for digest, _ in term]
        content = b"".join(data_by_hash[digest] for digest in chunks)
        assert len(content) == report["size"] == entry.size
        assert hashlib.sha256(content).hexdigest() == report["sha256"]
        assert entry.sha256 is not None and entry.sha256.hex() == report["sha256"]
        check_sha256(entry, hashlib.sha256(content).digest())
        # Our chunker cuts the rebuilt file exactly where the client did, and our hashes agree.
        ours = chunks_of([content])
        assert [chunk_hash(chunk) for chunk in ours] == chunks
        assert hash_to_hex(file_hash([(chunk_hash(c), len(c)) for c in ours])) == report["hash"]
