"""Cross-checks against the real client, run live: `hf_xet` hashes files and uploads them to a local
recorder (tests/xet_recorder.py), and everything it computes or sends must agree with our code.

This is the judge where the spec is ambiguous: file hashes over many sizes (chunk boundaries, the
merkle tree, the salt), xorbs and shards of a real upload, and whether the client accepts the shard we
serve for global dedup (it must then reference our xorb instead of uploading the data again), and
whether it downloads and decodes xorbs our serializer wrote, in every compression scheme.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from pathlib import Path

import pytest

from storage.core.xet.chunking import MAX_CHUNK, MIN_CHUNK, chunks_of
from storage.core.xet.hashing import chunk_hash, file_hash, hash_to_hex, hex_to_hash
from storage.core.xet.reconstruction import check_file, check_sha256, chunks_by_xorb
from storage.core.xet.shard import Shard, parse_shard, serialize_shard, with_hmac_key, xorb_entry
from storage.core.xet.xorb import Compression, build_xorb, packed_range, parse_xorb, serialize_xorb
from tests.xet_recorder import XetRecorder

hf_xet = pytest.importorskip("hf_xet")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _mixed(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        if kind < 0.5:
            out += rng.randbytes(rng.randint(1, 200_000))
        elif kind < 0.75:
            out += bytes(rng.randint(1, 300_000))
        elif out:
            begin = rng.randrange(len(out))
            out += out[begin : begin + rng.randint(1, 150_000)]
    return bytes(out[:size])


SIZES = [0, 1, 63, 64, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, 65_536, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1]


def _our_file_hash(data: bytes) -> str:
    return hash_to_hex(file_hash([(chunk_hash(chunk), len(chunk)) for chunk in chunks_of([data])]))


def test_file_hashes_match_hash_files(tmp_path: Path) -> None:
    contents = [random.Random(size).randbytes(size) for size in SIZES]
    contents += [bytes(size) for size in (MAX_CHUNK * 3 + 5, 1 << 20)]
    # Multi-megabyte files give hundreds of chunks: several levels of the aggregation tree.
    contents += [_mixed(seed, size) for seed, size in ((1, 700_000), (2, 3_000_000), (3, 6_500_000))]
    paths = []
    for index, content in enumerate(contents):
        path = tmp_path / f"f{index}"
        path.write_bytes(content)
        paths.append(str(path))
    reports = hf_xet.hash_files(paths)
    for content, report in zip(contents, reports, strict=True):
        assert report.file_size == len(content)
        assert _our_file_hash(content) == report.hash, f"{len(content)} bytes"


def _upload(cas: XetRecorder, files: list[bytes]) -> list[object]:
    return list(hf_xet.upload_bytes(files, cas.url, cas.token_info(), None, None, "model"))


def test_a_real_upload_parses_and_checks() -> None:
    files = [_mixed(4, 2_500_000), _mixed(5, 300_000), b""]
    with XetRecorder() as cas:
        reports = _upload(cas, files)
        xorbs = {hex_to_hash(url): parse_xorb(body, hex_to_hash(url)) for url, body in cas.xorbs.items()}
        shards = list(cas.shards)
    assert xorbs and shards
    refs = {digest: xorb.chunk_refs() for digest, xorb in xorbs.items()}
    entries = {}
    for data in shards:
        parsed = parse_shard(data)
        assert serialize_shard(parsed) == data
        assert chunks_by_xorb(parsed) == {digest: refs[digest] for digest in chunks_by_xorb(parsed)}
        entries.update({entry.file_hash: entry for entry in parsed.files})
    for content, report in zip(files, reports, strict=True):
        entry = entries[hex_to_hash(report.hash)]  # type: ignore[attr-defined]
        check_file(entry, refs)
        check_sha256(entry, hashlib.sha256(content).digest())
        assert entry.sha256 == hashlib.sha256(content).digest()
        assert _our_file_hash(content) == report.hash  # type: ignore[attr-defined]


@pytest.mark.parametrize("hmac_key", [bytes(32), bytes(range(1, 33))], ids=["plain", "keyed"])
def test_the_client_dedups_against_the_shard_we_serve(hmac_key: bytes) -> None:
    original = _mixed(6, 1_200_000)
    with XetRecorder() as cas:
        _upload(cas, [original])
        ((url, body),) = cas.xorbs.items()
    stored = parse_xorb(body, hex_to_hash(url))
    now = int(time.time())
    listing = Shard((), (xorb_entry(stored.hash, stored.chunk_refs(), len(body)),))
    if any(hmac_key):
        listing = with_hmac_key(listing, hmac_key)
    answer = serialize_shard(listing, footer=True, creation_timestamp=now, key_expiry=now + 7 * 86400)
    with XetRecorder(dedup_answers={hash_to_hex(chunk.hash): answer for chunk in stored.chunks}) as cas:
        (report,) = _upload(cas, [original + b"and a new tail"])
        queried = [request.path for request in cas.requests if request.path.startswith("/v1/chunks/")]
        new_xorbs = {hex_to_hash(url): parse_xorb(data, hex_to_hash(url)) for url, data in cas.xorbs.items()}
        (shard_bytes,) = cas.shards
    assert queried, "the client never asked for global dedup"
    (entry,) = parse_shard(shard_bytes).files
    assert entry.terms[0].xorb_hash == stored.hash  # the old data is referenced, not sent again
    assert sum(xorb.num_bytes for xorb in new_xorbs.values()) < MAX_CHUNK
    check_file(entry, {stored.hash: stored.chunk_refs(), **{d: x.chunk_refs() for d, x in new_xorbs.items()}})
    assert hash_to_hex(entry.file_hash) == report.hash  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", [Compression.NONE, Compression.LZ4, Compression.BG4_LZ4, None])
def test_the_client_downloads_the_xorbs_we_serialize(scheme: Compression | None, tmp_path: Path) -> None:
    rng = random.Random(8)
    weights = struct.pack("<50000f", *(rng.gauss(0, 1) for _ in range(50_000)))
    content = weights + bytes(300_000) + _mixed(9, 400_000)
    chunks = chunks_of([content])
    built = build_xorb(chunks)
    body = serialize_xorb(built, scheme)
    ends = parse_xorb(body, built.hash).packed_ends
    xorb_hex = hash_to_hex(built.hash)
    # Two files out of one xorb: all of it, and a middle slice that needs a ranged fetch.
    wanted = {"whole": (0, len(chunks)), "middle": (2, len(chunks) - 2)}
    with XetRecorder(served_xorbs={xorb_hex: body}) as cas:
        downloads = []
        for name, (start, end) in wanted.items():
            refs = built.chunk_refs()[start:end]
            file_hex = hash_to_hex(file_hash(refs))
            first, last = packed_range(ends, start, end)
            size = sum(length for _, length in refs)
            cas.reconstructions[file_hex] = {
                "offset_into_first_range": 0,
                "terms": [{"hash": xorb_hex, "unpacked_length": size, "range": {"start": start, "end": end}}],
                "fetch_info": {
                    xorb_hex: [
                        {
                            "range": {"start": start, "end": end},
                            "url": f"{cas.url}/xorb-bytes/{xorb_hex}",
                            "url_range": {"start": first, "end": last - 1},
                        }
                    ]
                },
            }
            downloads.append(hf_xet.PyXetDownloadInfo(str(tmp_path / name), file_hex, size))
        hf_xet.download_files(downloads, cas.url, cas.token_info(), None, None)
    assert (tmp_path / "whole").read_bytes() == content
    assert (tmp_path / "middle").read_bytes() == b"".join(chunks[2:-2])
