"""What a hostile Xet client could send the CAS instead of what hf_xet sends: each is refused with its
status and message, and what was stored before is intact afterwards."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from huggingface_hub import HfApi
from sqlalchemy import select

from storage.app.xet_uploads import MAX_XORB_BYTES
from storage.catalog.models import FileObject, XetXorb
from storage.core.xet.hashing import file_hash, hash_to_hex, hex_to_hash, verification_hash
from storage.core.xet.shard import FileEntry, Shard, Term, serialize_shard, xorb_entry
from storage.core.xet.xorb import Compression, Xorb, build_xorb, serialize_xorb
from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService
from tests.service.xet_support import new_repo, xet_client_env, xet_service

__all__ = ["xet_client_env", "xet_service"]  # fixtures, used by name


@dataclass
class Held:
    """A file pushed by the real client before the hostile requests, and a CAS session on its repo."""

    repo_id: str
    data: bytes
    cas_url: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def cas_token(service: RunningService, repo_id: str, token: str = WRITE_TOKEN) -> dict:
    got = service.http.get(f"/api/models/{repo_id}/xet-write-token/main", headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 200, got.text
    return got.json()


def xorbs_in_catalog(service: RunningService) -> list[tuple[str, str | None, bytes]]:
    with service.hub.session() as s:
        return [(x.hash, x.raw_key, x.chunk_table) for x in s.scalars(select(XetXorb).order_by(XetXorb.hash))]


@pytest.fixture
def held(xet_service: RunningService) -> Iterator[Held]:
    api = HfApi(endpoint=xet_service.url, token=WRITE_TOKEN)
    repo_id = new_repo(api)
    data = os.urandom(1 << 20)
    api.upload_file(path_or_fileobj=data, path_in_repo="held.bin", repo_id=repo_id)
    # Stored before the test runs: a test that collects garbage with no grace period would otherwise
    # delete the objects an ingest still in flight has written but not yet recorded.
    xet_service.hub.queue.wait(timeout=120)
    grant = cas_token(xet_service, repo_id)
    before = xorbs_in_catalog(xet_service)
    yield Held(repo_id, data, grant["casUrl"], grant["accessToken"])
    # Nothing stored before was damaged: the file reads back whole, the xorb records are as they were.
    got = xet_service.http.get(f"/{repo_id}/resolve/main/held.bin")
    assert got.status_code == 200 and got.content == data
    assert [x for x in xorbs_in_catalog(xet_service) if x[0] in {b[0] for b in before}] == before


def chunks(count: int = 4, size: int = 20_000) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def post_xorb(service: RunningService, held: Held, body: bytes, xorb_hash: bytes, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token or held.token}"}
    got = service.http.post(f"{held.cas_url}/v1/xorbs/default/{hash_to_hex(xorb_hash)}", content=body, headers=headers)
    return {"status": got.status_code, "error": got.json().get("error", ""), "json": got.json()}


def file_entry(xorb: Xorb, start: int = 0, end: int | None = None, **changes: object) -> FileEntry:
    end = len(xorb.chunks) if end is None else end
    picked = xorb.chunks[start:end]
    data = b"".join(c.data for c in picked)
    entry = {
        "file_hash": file_hash((c.hash, len(c.data)) for c in picked),
        "terms": (Term(xorb.hash, start, end, len(data)),),
        "sha256": hashlib.sha256(data).digest(),
        "verification": (verification_hash(c.hash for c in picked),),
    }
    entry.update(changes)
    return FileEntry(**entry)  # type: ignore[arg-type]


def post_shard(service: RunningService, held: Held, shard: Shard) -> dict:
    got = service.http.post(f"{held.cas_url}/v1/shards", content=serialize_shard(shard), headers=held.headers)
    return {"status": got.status_code, "error": got.json().get("error", "")}


def test_a_well_formed_upload_by_hand_is_staged(xet_service: RunningService, held: Held) -> None:
    """The hand-made requests below differ from this one in one thing each."""
    xorb = build_xorb(chunks())
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)["json"] == {"was_inserted": True}
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)["json"] == {"was_inserted": False}
    entry = file_entry(xorb)
    refs = [(c.hash, len(c.data)) for c in xorb.chunks]
    assert post_shard(xet_service, held, Shard((entry,), (xorb_entry(xorb.hash, refs),)))["status"] == 200
    assert xet_service.hub.has_file(entry.sha256.hex())


def test_truncated_xorb(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    got = post_xorb(xet_service, held, serialize_xorb(xorb)[:-100], xorb.hash)
    assert got["status"] == 400
    assert "chunk 3 at byte" in got["error"] and "compressed bytes but" in got["error"]


def test_chunk_whose_hash_does_not_match(xet_service: RunningService, held: Held) -> None:
    data = chunks()
    listed = build_xorb(data).chunks[0].hash
    data[0] = bytes([data[0][0] ^ 0xFF]) + data[0][1:]
    xorb = build_xorb(data)
    # A footer (the client omits it; a hostile one may not) that lists chunk 0 under its old hash.
    body = serialize_xorb(xorb, compression=Compression.NONE, footer=True).replace(xorb.chunks[0].hash, listed)
    got = post_xorb(xet_service, held, body, xorb.hash)
    assert got["status"] == 400
    assert got["error"] == "xorb footer disagrees with the chunks: chunk 0's hash differs from its data's"
    with xet_service.hub.session() as s:
        assert s.get(XetXorb, hash_to_hex(xorb.hash)) is None


def test_xorb_whose_body_is_not_the_hash_in_its_url(xet_service: RunningService, held: Held) -> None:
    xorb, other = build_xorb(chunks()), build_xorb(chunks())
    got = post_xorb(xet_service, held, serialize_xorb(xorb), other.hash)
    assert got["status"] == 400
    assert got["error"] == f"xorb hashes to {hash_to_hex(xorb.hash)}, not {hash_to_hex(other.hash)}"
    with xet_service.hub.session() as s:
        assert s.get(XetXorb, hash_to_hex(other.hash)) is None and s.get(XetXorb, hash_to_hex(xorb.hash)) is None


def test_shard_naming_a_xorb_never_uploaded(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    entry = file_entry(xorb)
    got = post_shard(xet_service, held, Shard((entry,), ()))
    assert got["status"] == 400
    assert f"xorb {hash_to_hex(xorb.hash)} is neither stored nor in this upload" in got["error"]
    assert not xet_service.hub.has_file(entry.sha256.hex())
    # Listing it as new does not help: the CAS believes its own records, not the shard's.
    refs = [(c.hash, len(c.data)) for c in xorb.chunks]
    got = post_shard(xet_service, held, Shard((entry,), (xorb_entry(xorb.hash, refs),)))
    assert got["status"] == 400 and "that xorb never was" in got["error"]


def test_shard_whose_terms_exceed_the_xorb_or_the_file(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    entry = file_entry(xorb)
    past_the_end = Term(xorb.hash, 2, 6, 4 * 20_000)
    got = post_shard(xet_service, held, Shard((FileEntry(entry.file_hash, (past_the_end,), entry.sha256,
                                                         entry.verification),), ()))
    assert got["status"] == 400 and "chunks [2, 6) reach past xorb" in got["error"] and "4 chunks" in got["error"]
    longer = Term(xorb.hash, 0, 4, 4 * 20_000 + 1)
    got = post_shard(xet_service, held, Shard((FileEntry(entry.file_hash, (longer,), entry.sha256,
                                                         entry.verification),), ()))
    assert got["status"] == 400 and "declares 80001 bytes but its chunks add up to 80000" in got["error"]
    assert not xet_service.hub.has_file(entry.sha256.hex())


def test_shard_naming_chunks_it_cannot_prove_it_had(xet_service: RunningService, held: Held) -> None:
    """Knowing a held xorb's name (a dedup answer gives it) is not enough to claim its chunks."""
    (held_xorb, _, _) = xorbs_in_catalog(xet_service)[0]
    with xet_service.hub.session() as s:
        row = s.get(XetXorb, held_xorb)
        size, count = row.unpacked_bytes, row.num_chunks
    term = Term(hex_to_hash(held_xorb), 0, count, size)
    guess = FileEntry(os.urandom(32), (term,), None, (os.urandom(32),))
    got = post_shard(xet_service, held, Shard((guess,), ()))
    assert got["status"] == 400 and "term 0: verification hash" in got["error"] and "does not match" in got["error"]


def test_shard_whose_sha256_is_not_its_content(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    claimed = hashlib.sha256(b"something else").digest()
    got = post_shard(xet_service, held, Shard((file_entry(xorb, sha256=claimed),), ()))
    assert got["status"] == 400 and f"declared {claimed.hex()}" in got["error"]
    assert not xet_service.hub.has_file(claimed.hex())


def test_oversized_xorb_is_refused_before_it_is_read(xet_service: RunningService, held: Held) -> None:
    host, port = xet_service.url.removeprefix("http://").split(":")
    path = held.cas_url.removeprefix(xet_service.url) + "/v1/xorbs/default/" + "0" * 64
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {held.token}\r\n"
            f"Content-Length: {MAX_XORB_BYTES + 1}\r\n\r\n")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + bytes(1024))  # a sliver of the body: the answer must not wait for more
        answer = sock.recv(65536).decode("latin-1")
    assert answer.split("\r\n", 1)[0] == "HTTP/1.1 413 Request Entity Too Large"
    assert f"a xorb is at most {MAX_XORB_BYTES} bytes" in answer
    assert time.monotonic() - started < 5


def test_cas_token_for_another_repository(xet_service: RunningService, held: Held) -> None:
    other = new_repo(HfApi(endpoint=xet_service.url, token=WRITE_TOKEN))
    foreign = cas_token(xet_service, other)["accessToken"]
    xorb = build_xorb(chunks())
    got = post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash, token=foreign)
    assert got["status"] == 403
    assert got["error"] == (
        f"forbidden: this Xet access token is for the model repository {other!r}, not the model {held.repo_id!r}"
    )
    as_foreign = {"Authorization": f"Bearer {foreign}"}
    dedup = xet_service.http.get(f"{held.cas_url}/v1/chunks/default/{'0' * 64}", headers=as_foreign)
    assert dedup.status_code == 403
    # A user's own Hub token is not a CAS token either.
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash, token=WRITE_TOKEN)["status"] == 401


def test_a_models_cas_token_is_refused_for_the_dataset_of_the_same_name(
    xet_service: RunningService, held: Held
) -> None:
    api = HfApi(endpoint=xet_service.url, token=WRITE_TOKEN)
    api.create_repo(held.repo_id, repo_type="dataset")
    dataset = xet_service.http.get(f"/api/datasets/{held.repo_id}/xet-write-token/main",
                                   headers={"Authorization": f"Bearer {WRITE_TOKEN}"}).json()
    assert dataset["casUrl"] == f"{xet_service.url}/api/v1/xet/datasets/{held.repo_id}" != held.cas_url
    xorb = build_xorb(chunks())
    as_model = {"Authorization": f"Bearer {held.token}"}
    got = xet_service.http.post(f"{dataset['casUrl']}/v1/xorbs/default/{hash_to_hex(xorb.hash)}",
                                content=serialize_xorb(xorb), headers=as_model)
    assert got.status_code == 403 and got.json()["error"] == (
        f"forbidden: this Xet access token is for the model repository {held.repo_id!r}, "
        f"not the dataset {held.repo_id!r}"
    )
    # The model's own CAS takes the xorb; the dataset's shard route still refuses the model's token.
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)["status"] == 200
    shard = serialize_shard(Shard((file_entry(xorb),), ()))
    got = xet_service.http.post(f"{dataset['casUrl']}/v1/shards", content=shard, headers=as_model)
    assert got.status_code == 403 and "not the dataset" in got.json()["error"]
    assert not xet_service.hub.has_file(file_entry(xorb).sha256.hex())
    # With the dataset's own token the same shard is staged.
    as_dataset = {"Authorization": f"Bearer {dataset['accessToken']}"}
    got = xet_service.http.post(f"{dataset['casUrl']}/v1/shards", content=shard, headers=as_dataset)
    assert got.status_code == 200 and xet_service.hub.has_file(file_entry(xorb).sha256.hex())


def test_expired_and_read_only_cas_tokens(xet_service: RunningService, held: Held) -> None:
    tokens = xet_service.app.state.deltahub_xet.tokens
    expired, _ = tokens.issue("model", held.repo_id, "main", "write", now=time.time() - 2 * tokens.ttl_seconds)
    xorb = build_xorb(chunks())
    got = post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash, token=expired)
    assert got["status"] == 401 and "Xet access token expired" in got["error"]
    read = xet_service.http.get(f"/api/models/{held.repo_id}/xet-read-token/main",
                                headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()["accessToken"]
    got = post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash, token=read)
    assert got["status"] == 403 and "read-only" in got["error"]
    forged = held.token[:-4] + ("0000" if not held.token.endswith("0000") else "1111")
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash, token=forged)["status"] == 401
    with xet_service.hub.session() as s:
        assert s.get(XetXorb, hash_to_hex(xorb.hash)) is None


def test_dedup_answers_only_for_held_chunks(xet_service: RunningService, held: Held) -> None:
    missing = xet_service.http.get(f"{held.cas_url}/v1/chunks/default/{'0' * 64}", headers=held.headers)
    assert missing.status_code == 404
    bad = xet_service.http.get(f"{held.cas_url}/v1/chunks/default/not-a-hash", headers=held.headers)
    assert bad.status_code == 400 and "is not a 64-hex-digit Xet hash" in bad.json()["error"]
    wrong_prefix = xet_service.http.get(f"{held.cas_url}/v1/chunks/other/{'0' * 64}", headers=held.headers)
    assert wrong_prefix.status_code == 400


def test_gc_sweeps_xorbs_no_shard_came_for_and_xorbs_nothing_holds(xet_service: RunningService, held: Held) -> None:
    from workers.jobs.gc import collect_garbage

    lone = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(lone), lone.hash)  # an upload cut off before its shard
    staged = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(staged), staged.hash)
    entry = file_entry(staged)
    assert post_shard(xet_service, held, Shard((entry,), ()))["status"] == 200  # staged, never committed
    store = xet_service.hub.store
    with xet_service.hub.session() as s:
        lone_key = s.get(XetXorb, hash_to_hex(lone.hash)).raw_key
        assert s.get(XetXorb, hash_to_hex(staged.hash)).raw_key is None  # its file holds every chunk
        staging_key = s.get(FileObject, entry.sha256.hex()).staging_key
    assert lone_key.startswith("xet/xorbs/") and store.head(lone_key) is not None
    # The file is exactly that xorb's chunks: the xorb's copy became its staging copy (not written twice).
    assert staging_key.startswith("xet/xorbs/") and store.head(staging_key).size == entry.size

    assert collect_garbage(xet_service.hub, grace_seconds=3600).orphans == 0  # nothing is old enough yet
    assert store.head(lone_key) is not None and store.head(staging_key) is not None
    report = collect_garbage(xet_service.hub, grace_seconds=0)
    assert report.orphans >= 1 and store.head(lone_key) is None
    assert not xet_service.hub.has_file(entry.sha256.hex()) and store.head(staging_key) is None
    with xet_service.hub.session() as s:
        assert s.get(XetXorb, hash_to_hex(lone.hash)) is None and s.get(XetXorb, hash_to_hex(staged.hash)) is None
    # Gone means gone: the same xorb is taken again as new.
    assert post_xorb(xet_service, held, serialize_xorb(staged), staged.hash)["json"] == {"was_inserted": True}


def test_dedup_answers_name_no_chunk_hash_in_the_clear(xet_service: RunningService, held: Held) -> None:
    import blake3

    from storage.catalog.models import XetDedupChunk
    from storage.core.xet.shard import parse_shard

    with xet_service.hub.session() as s:
        entry = s.scalars(select(XetDedupChunk)).first()
        row = s.get(XetXorb, entry.xorb_hash)
        real = [row.chunk_table[i : i + 32] for i in range(0, len(row.chunk_table), 36)]
    got = xet_service.http.get(f"{held.cas_url}/v1/chunks/default/{entry.chunk_hash}", headers=held.headers)
    assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
    answer = parse_shard(got.content)
    assert answer.files == () and [hash_to_hex(x.xorb_hash) for x in answer.xorbs] == [entry.xorb_hash]
    listed = [c.chunk_hash for c in answer.xorbs[0].chunks]
    assert answer.hmac_key != bytes(32) and not set(listed) & set(real)
    assert listed == [blake3.blake3(h, key=answer.hmac_key).digest() for h in real]
    again = parse_shard(xet_service.http.get(f"{held.cas_url}/v1/chunks/default/{entry.chunk_hash}",
                                             headers=held.headers).content)
    assert again.hmac_key != answer.hmac_key  # a fresh key per answer


def raw_key(service: RunningService, xorb: Xorb) -> str | None:
    with service.hub.session() as s:
        return s.get(XetXorb, hash_to_hex(xorb.hash)).raw_key


def test_a_one_xorb_file_is_staged_under_the_xorbs_copy(xet_service: RunningService, held: Held) -> None:
    """Read once and hashed, never written twice; the copy is the file's from then on."""
    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    key = raw_key(xet_service, xorb)
    entry = file_entry(xorb)
    assert post_shard(xet_service, held, Shard((entry,), ()))["status"] == 200
    with xet_service.hub.session() as s:
        assert s.get(FileObject, entry.sha256.hex()).staging_key == key
    assert raw_key(xet_service, xorb) is None
    want = b"".join(c.data for c in xorb.chunks)
    assert b"".join(xet_service.hub.read(entry.sha256.hex())) == want
    assert b"".join(xet_service.hub.read(entry.sha256.hex(), 30_000, 50_000)) == want[30_000:50_000]


def test_a_file_that_is_part_of_a_xorb_is_written_to_staging(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    key = raw_key(xet_service, xorb)
    entry = file_entry(xorb, 0, 2)
    assert post_shard(xet_service, held, Shard((entry,), ()))["status"] == 200
    with xet_service.hub.session() as s:
        assert s.get(FileObject, entry.sha256.hex()).staging_key.startswith("staging/")
    # Chunks 2 and 3 are held by no file: the xorb keeps its copy for the shard that names them.
    assert raw_key(xet_service, xorb) == key and xet_service.hub.store.head(key) is not None


def test_a_xorb_copy_damaged_before_its_shard_stages_nothing(xet_service: RunningService, held: Held) -> None:
    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    key = raw_key(xet_service, xorb)
    path = xet_service.hub.store.root / "objects" / key
    damaged = bytearray(path.read_bytes())
    damaged[25_000] ^= 1
    path.write_bytes(bytes(damaged))
    entry = file_entry(xorb)
    got = post_shard(xet_service, held, Shard((entry,), ()))
    assert got["status"] == 500 and "chunk 1 of xorb" in got["error"] and "another hash" in got["error"]
    assert not xet_service.hub.has_file(entry.sha256.hex())
    assert raw_key(xet_service, xorb) == key  # left to the xorb: nothing took it over


def test_a_copy_released_before_its_shard_is_not_taken_over(xet_service: RunningService, held: Held) -> None:
    """GC released the copy of a xorb no shard came for (catalog first, then the store)."""
    from storage.catalog import xet as catalog

    xorb = build_xorb(chunks())
    post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)
    with xet_service.hub.session() as s:
        key = catalog.release_raw(s, hash_to_hex(xorb.hash))
    xet_service.hub.store.delete(key)
    entry = file_entry(xorb)
    got = post_shard(xet_service, held, Shard((entry,), ()))
    assert got["status"] == 400 and "is no longer held (upload it again)" in got["error"]
    assert not xet_service.hub.has_file(entry.sha256.hex())
    # Sent again, the xorb gets a new copy (a new key) and the shard is staged under it.
    assert post_xorb(xet_service, held, serialize_xorb(xorb), xorb.hash)["json"] == {"was_inserted": True}
    assert raw_key(xet_service, xorb) not in (None, key)
    assert post_shard(xet_service, held, Shard((entry,), ()))["status"] == 200
