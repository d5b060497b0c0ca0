"""Quotas per namespace on logical bytes, refused with 403 and the figures before any byte travels:
preupload, the LFS batch, the Xet write token, the Xet shard, and the commit itself."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from service.accounts import AccountAdmin
from storage.core.xet.hashing import file_hash, hash_to_hex, verification_hash
from storage.core.xet.shard import FileEntry, Shard, Term, serialize_shard, xorb_entry
from storage.core.xet.xorb import build_xorb, serialize_xorb
from tests.service.conftest import WRITE_TOKEN, RunningService

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}
QUOTA = 10_000


@pytest.fixture
def limited(service: RunningService) -> str:
    """alice's namespace with a quota of 10,000 logical bytes, holding one 6,000-byte file."""
    accounts = AccountAdmin(service.hub.session)
    accounts.create_user("alice")
    accounts.set_quota("alice", QUOTA)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    api.create_repo("alice/full")
    api.upload_file(path_or_fileobj=b"x" * 6000, path_in_repo="held.bin", repo_id="alice/full")
    return "alice/full"


def _usage(service: RunningService) -> int:
    return service.hub.quotas.usage("alice")[0]


def test_preupload_refuses_files_past_the_quota_with_usage_and_limit(service: RunningService, limited: str) -> None:
    usage = _usage(service)
    assert 6000 <= usage < QUOTA
    over = {"files": [{"path": "big.bin", "size": QUOTA - usage + 1, "sample": ""}]}
    refused = service.http.post(f"/api/models/{limited}/preupload/main", json=over, headers=AUTH)
    assert refused.status_code == 403, refused.text
    message = refused.json()["error"]
    assert f"quota of {QUOTA:,}" in message and f"holds {usage:,} now" in message and "'alice'" in message
    fits = {"files": [{"path": "ok.bin", "size": QUOTA - usage, "sample": ""}]}
    assert service.http.post(f"/api/models/{limited}/preupload/main", json=fits, headers=AUTH).status_code == 200
    # The same file again adds nothing: re-pushing an unchanged file is never refused.
    same = {"files": [{"path": "held.bin", "size": 6000, "sample": ""}]}
    assert service.http.post(f"/api/models/{limited}/preupload/main", json=same, headers=AUTH).status_code == 200


def test_lfs_batch_refuses_before_handing_out_upload_urls(service: RunningService, limited: str) -> None:
    data = b"y" * (QUOTA - _usage(service) + 1)
    puts = service.counters()["lfs_put_requests"]
    objects = {"operation": "upload", "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]}
    refused = service.http.post(f"/{limited}.git/info/lfs/objects/batch", json=objects, headers=AUTH)
    assert refused.status_code == 403 and "quota" in refused.json()["error"]
    assert service.counters()["lfs_put_requests"] == puts
    # A held file the repository already names costs nothing.
    held = hashlib.sha256(b"x" * 6000).hexdigest()
    again = {"operation": "upload", "objects": [{"oid": held, "size": 6000}]}
    assert service.http.post(f"/{limited}.git/info/lfs/objects/batch", json=again, headers=AUTH).status_code == 200


def test_the_client_sees_the_quota_message_and_nothing_is_stored(service: RunningService, limited: str) -> None:
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    before = _usage(service)
    sent = service.counters()
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=b"z" * (QUOTA - before + 1), path_in_repo="big.bin", repo_id=limited)
    assert refused.value.response.status_code == 403
    assert "quota" in str(refused.value)
    assert _usage(service) == before
    assert service.counters()["lfs_put_bytes"] == sent["lfs_put_bytes"]


def test_a_full_namespace_gets_no_xet_write_token_and_other_namespaces_are_untouched(
    service: RunningService, limited: str
) -> None:
    AccountAdmin(service.hub.session).set_quota("alice", _usage(service))
    refused = service.http.get(f"/api/models/{limited}/xet-write-token/main", headers=AUTH)
    assert refused.status_code == 403 and "quota" in refused.json()["error"]
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    api.create_repo("bob/free")
    assert service.http.get("/api/models/bob/free/xet-write-token/main", headers=AUTH).status_code == 200


def test_the_commit_is_checked_where_logical_bytes_change(service: RunningService, limited: str) -> None:
    """A client that skips preupload still cannot pass the quota: the commit is refused, nothing lands."""
    AccountAdmin(service.hub.session).set_quota("alice", _usage(service) + 10)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    commits = len(api.list_repo_commits(limited))
    inline = {"path": "s.txt", "content": base64.b64encode(b"s" * 100).decode(), "encoding": "base64"}
    lines = [{"key": "header", "value": {"summary": "sneak", "description": ""}}, {"key": "file", "value": inline}]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    refused = service.http.post(f"/api/models/{limited}/commit/main", content=body,
                                headers={**AUTH, "content-type": "application/x-ndjson"})
    assert refused.status_code == 403 and "quota" in refused.json()["error"]
    assert len(api.list_repo_commits(limited)) == commits


def test_the_client_is_refused_before_a_large_files_bytes_travel(
    transport: str, service: RunningService, limited: str
) -> None:
    """A file over the inline limit, through Xet (the client's default) and through LFS: preupload refuses
    it, so no xorb, shard or LFS PUT is sent."""
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    before, sent = _usage(service), service.counters()
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=os.urandom(QUOTA), path_in_repo="big.bin", repo_id=limited)
    assert refused.value.response.status_code == 403 and "quota" in str(refused.value)
    after = service.counters()
    for counter in ("xet_xorbs_received", "xet_xorb_bytes", "xet_shards", "lfs_put_requests", "lfs_put_bytes"):
        assert after[counter] == sent[counter], counter
    assert _usage(service) == before
    # The same upload with room to spare does send its bytes, by the path under test.
    AccountAdmin(service.hub.session).set_quota("alice", None)
    api.upload_file(path_or_fileobj=os.urandom(QUOTA), path_in_repo="big.bin", repo_id=limited)
    moved = "xet_xorb_bytes" if transport == "xet" else "lfs_put_bytes"
    assert service.counters()[moved] >= after[moved] + QUOTA


def _xorb_and_shard(data_chunks: list[bytes]) -> tuple[bytes, bytes, bytes, str]:
    """A xorb of these chunks and a shard naming one file made of all of them, as hf_xet would send."""
    xorb = build_xorb(data_chunks)
    data = b"".join(c.data for c in xorb.chunks)
    entry = FileEntry(
        file_hash=file_hash((c.hash, len(c.data)) for c in xorb.chunks),
        terms=(Term(xorb.hash, 0, len(xorb.chunks), len(data)),),
        sha256=hashlib.sha256(data).digest(),
        verification=(verification_hash(c.hash for c in xorb.chunks),),
    )
    shard = Shard((entry,), (xorb_entry(xorb.hash, [(c.hash, len(c.data)) for c in xorb.chunks]),))
    return serialize_xorb(xorb), xorb.hash, serialize_shard(shard), entry.sha256.hex()


def test_a_xet_shard_past_the_quota_is_refused_and_stages_nothing(service: RunningService, limited: str) -> None:
    """A client holding a CAS write token from before the namespace filled (or one that skipped
    preupload) can send xorbs, but the shard that would make them a file is refused with the figures,
    and nothing is staged or counted; xorbs no shard came for are left to GC. A shard that fits passes."""
    grant = service.http.get(f"/api/models/{limited}/xet-write-token/main", headers=AUTH).json()
    cas, headers = grant["casUrl"], {"Authorization": f"Bearer {grant['accessToken']}"}
    usage = _usage(service)
    for size, fits in ((QUOTA - usage + 1, False), (QUOTA - usage, True)):
        xorb, xorb_hash, shard, sha = _xorb_and_shard([os.urandom(size)])
        sent = service.http.post(f"{cas}/v1/xorbs/default/{hash_to_hex(xorb_hash)}", content=xorb, headers=headers)
        assert sent.status_code == 200, sent.text
        answer = service.http.post(f"{cas}/v1/shards", content=shard, headers=headers)
        if fits:
            assert answer.status_code == 200, answer.text
            assert service.hub.has_file(sha)
            continue
        assert answer.status_code == 403, answer.text
        message = answer.json()["error"]
        assert f"quota of {QUOTA:,}" in message and f"holds {usage:,} now" in message
        assert not service.hub.has_file(sha)
        assert _usage(service) == usage
