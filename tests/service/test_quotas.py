"""Quotas per namespace on logical bytes, refused with 403 and the figures before any byte travels:
preupload, the LFS batch, the Xet write token, and the commit itself."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from service.accounts import AccountAdmin
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
