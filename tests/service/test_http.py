"""The HTTP contract below the client: headers, ranges, paging, payload checks, signed uploads, auth."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.file_download import http_get

from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService

REPO = "alice/m"
AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}


@pytest.fixture
def blob(api: HfApi) -> bytes:
    """A repository holding one 50 000-byte file, data.bin, on main."""
    api.create_repo(REPO)
    data = os.urandom(50_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="dir/data.bin", repo_id=REPO)
    return data


def _resolve(path: str = "dir/data.bin", revision: str = "main") -> str:
    return f"/{REPO}/resolve/{revision}/{path}"


def test_head_describes_the_file_without_a_body(service: RunningService, blob: bytes) -> None:
    head = service.http.head(_resolve())
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(blob))
    assert head.headers["etag"] == f'"{hashlib.sha256(blob).hexdigest()}"'
    assert head.headers["accept-ranges"] == "bytes"
    commit = head.headers["x-repo-commit"]
    assert service.http.head(_resolve(revision=commit)).headers["etag"] == head.headers["etag"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=49990-", 49990, 50_000),
        ("bytes=-10", 49990, 50_000),
        ("bytes=100-999999", 100, 50_000),
    ],
)
def test_ranges_answer_206(service: RunningService, blob: bytes, header: str, start: int, end: int) -> None:
    got = service.http.get(_resolve(), headers={"Range": header})
    assert got.status_code == 206
    assert got.content == blob[start:end]
    assert got.headers["content-range"] == f"bytes {start}-{end - 1}/{len(blob)}"
    assert got.headers["content-length"] == str(end - start)


def test_unsatisfiable_range_answers_416(service: RunningService, blob: bytes) -> None:
    got = service.http.get(_resolve(), headers={"Range": "bytes=50000-"})
    assert got.status_code == 416
    assert got.headers["content-range"] == f"bytes */{len(blob)}"


@pytest.mark.parametrize("headers", [{"Range": "bytes=0-1,5-6"}, {"Range": "bytes=0-9", "If-Range": '"other"'}])
def test_ignored_ranges_send_the_whole_file(service: RunningService, blob: bytes, headers: dict) -> None:
    got = service.http.get(_resolve(), headers=headers)
    assert got.status_code == 200
    assert got.content == blob


def test_client_resume_fetches_only_the_missing_bytes(service: RunningService, blob: bytes) -> None:
    partial = io.BytesIO(blob[:20_000])
    partial.seek(0, io.SEEK_END)
    before = service.counters()["download_bytes"]
    http_get(service.url + _resolve(), partial, resume_size=20_000, expected_size=len(blob))
    assert partial.getvalue() == blob
    assert service.counters()["download_bytes"] - before == len(blob) - 20_000


def test_missing_entries_carry_error_code_and_commit(service: RunningService, blob: bytes) -> None:
    got = service.http.head(_resolve("nope.bin"))
    assert got.status_code == 404
    assert got.headers["x-error-code"] == "EntryNotFound"
    assert len(got.headers["x-repo-commit"]) == 40
    assert service.http.get(_resolve(revision="nope")).headers["x-error-code"] == "RevisionNotFound"
    assert service.http.get("/alice/none/resolve/main/x").headers["x-error-code"] == "RepoNotFound"


def test_tree_pages_link_back_to_this_server(service: RunningService, api: HfApi) -> None:
    api.create_repo(REPO)
    api.create_commit(REPO, [_add(f"f{i}.txt", b"%d" % i) for i in range(7)], commit_message="seven files")
    url, seen, pages = f"{service.url}/api/models/{REPO}/tree/main?recursive=true", [], 0
    while url:
        got = httpx.get(url)
        assert got.status_code == 200
        pages += 1
        seen += [item["path"] for item in got.json()]
        url = got.links.get("next", {}).get("url")
        assert url is None or url.startswith(service.url)
    assert pages == 3
    assert seen == [".gitattributes"] + [f"f{i}.txt" for i in range(7)]
    missing = service.http.get(f"/api/models/{REPO}/tree/main/no%2Fsuch")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "EntryNotFound"


def _add(path: str, data: bytes):
    from huggingface_hub import CommitOperationAdd

    return CommitOperationAdd(path, data)


def _ndjson(*items: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


HEADER = {"key": "header", "value": {"summary": "s", "description": ""}}


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (_ndjson(HEADER) + b"{not json\n", 2),
        (_ndjson({"key": "file", "value": {"path": "a", "content": "", "encoding": "base64"}}), 1),
        (_ndjson(HEADER, {"key": "file", "value": {"path": "a", "content": "!!", "encoding": "base64"}}), 2),
        (_ndjson(HEADER, {"key": "lfsFile", "value": {"path": "a", "algo": "sha256", "oid": "xyz"}}), 2),
        (_ndjson(HEADER, {"key": "deletedFile", "value": {"path": "a"}}, {"key": "rename", "value": {}}), 3),
        (_ndjson(HEADER, HEADER), 2),
    ],
)
def test_malformed_commit_lines_are_named(service: RunningService, api: HfApi, body: bytes, line: int) -> None:
    api.create_repo(REPO)
    got = service.http.post(f"/api/models/{REPO}/commit/main", content=body, headers=AUTH)
    assert got.status_code == 400
    assert f"line {line}:" in got.json()["error"]


def test_commit_with_inline_and_uploaded_files(service: RunningService, api: HfApi) -> None:
    api.create_repo(REPO)
    inline = {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"hi").decode()}}
    got = service.http.post(f"/api/models/{REPO}/commit/main", content=_ndjson(HEADER, inline), headers=AUTH)
    assert got.status_code == 200, got.text
    assert got.json()["commitUrl"] == f"{service.url}/{REPO}/commit/{got.json()['commitOid']}"
    unknown = {"key": "lfsFile", "value": {"path": "b.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3}}
    got = service.http.post(f"/api/models/{REPO}/commit/main", content=_ndjson(HEADER, unknown), headers=AUTH)
    assert got.status_code == 404
    wrong_size = {"key": "lfsFile", "value": {"path": "c", "oid": hashlib.sha256(b"hi").hexdigest(), "size": 3}}
    got = service.http.post(f"/api/models/{REPO}/commit/main", content=_ndjson(HEADER, wrong_size), headers=AUTH)
    assert got.status_code == 400
    on_commit = service.http.post(f"/api/models/{REPO}/commit/{'a' * 40}", content=_ndjson(HEADER), headers=AUTH)
    assert on_commit.status_code == 400
    as_pr = service.http.post(f"/api/models/{REPO}/commit/main?create_pr=1", content=_ndjson(HEADER), headers=AUTH)
    assert as_pr.status_code == 501


def test_commit_bodies_are_bounded(make_service) -> None:
    small = make_service(max_commit_bytes=200_000, regular_file_max_bytes=1000)
    HfApi(endpoint=small.url, token=WRITE_TOKEN).create_repo(REPO)
    url = f"/api/models/{REPO}/commit/main"
    long_line = {"key": "file", "value": {"path": "a", "content": base64.b64encode(os.urandom(80_000)).decode()}}
    got = small.http.post(url, content=_ndjson(HEADER, long_line), headers=AUTH)
    assert got.status_code == 413 and "line is larger" in got.json()["error"]
    many = [{"key": "deletedFile", "value": {"path": f"file-{i}"}} for i in range(5000)]
    got = small.http.post(url, content=_ndjson(HEADER, *many), headers=AUTH)
    assert got.status_code == 413 and "payload larger than 200000" in got.json()["error"]


def _batch(service: RunningService, data: bytes) -> dict:
    body = {
        "operation": "upload",
        "transfers": ["basic", "multipart"],
        "hash_algo": "sha256",
        "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}],
    }
    got = service.http.post(
        f"/{REPO}.git/info/lfs/objects/batch",
        json=body,
        headers={**AUTH, "Content-Type": "application/vnd.git-lfs+json", "Accept": "application/vnd.git-lfs+json"},
    )
    assert got.status_code == 200, got.text
    return got.json()["objects"][0]


def test_lfs_upload_urls_are_signed_and_checked(service: RunningService, api: HfApi) -> None:
    api.create_repo(REPO)
    data = os.urandom(10_000)
    answer = _batch(service, data)
    href = answer["actions"]["upload"]["href"]
    assert href.startswith(service.url)
    assert httpx.put(href.replace("signature=", "signature=0"), content=data).status_code == 403
    assert httpx.put(href, content=os.urandom(10_000)).status_code == 400  # not the announced bytes
    assert httpx.put(href, content=data + b"!").status_code == 400  # more than announced
    assert httpx.put(href, content=data).status_code == 200
    assert httpx.put(href, content=data).status_code == 200  # already held: read and dropped
    verify = answer["actions"]["verify"]
    sha = hashlib.sha256(data).hexdigest()
    assert httpx.post(verify["href"], json={"oid": sha, "size": len(data)}, headers=AUTH).status_code == 200
    assert "actions" not in _batch(service, data)  # held now: nothing to transfer


def test_expired_upload_urls_are_refused(make_service) -> None:
    short = make_service(upload_url_ttl_seconds=-1)
    HfApi(endpoint=short.url, token=WRITE_TOKEN).create_repo(REPO)
    data = b"x" * 100
    got = httpx.put(_batch(short, data)["actions"]["upload"]["href"], content=data)
    assert got.status_code == 403 and "expired" in got.json()["error"]


def test_tokens_are_checked(service: RunningService, blob: bytes) -> None:
    bad = service.http.get(_resolve(), headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    assert bad.headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert service.http.get(_resolve(), headers={"Authorization": "Basic abc"}).status_code == 401
    assert service.http.get("/api/whoami-v2").status_code == 401
    me = service.http.get("/api/whoami-v2", headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()
    assert me["name"] == "bob" and me["auth"]["accessToken"]["role"] == "read"


def test_xet_clients_get_a_cas_token(service: RunningService, blob: bytes) -> None:
    # The Xet protocol itself is tested in test_xet.py.
    got = service.http.get(f"/api/models/{REPO}/xet-write-token/main", headers=AUTH)
    assert got.status_code == 200 and got.json()["casUrl"].endswith(f"/api/v1/xet/models/{REPO}")


def test_native_api(service: RunningService, api: HfApi, blob: bytes) -> None:
    health = service.http.get("/api/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "catalog": True, "store": True}
    api.create_repo("alice/hidden", private=True)
    assert [r["repo_id"] for r in service.http.get("/api/v1/repos").json()] == [REPO]
    assert len(service.http.get("/api/v1/repos", headers=AUTH).json()) == 2
    assert service.http.get("/api/v1/repos/alice/hidden").status_code == 404
    detail = service.http.get(f"/api/v1/repos/{REPO}").json()
    commits = service.http.get(f"/api/v1/repos/{REPO}/commits").json()
    assert detail["branches"] == {"main": commits[0]["oid"]}
    sha = hashlib.sha256(blob).hexdigest()
    assert service.http.get(f"/api/v1/files/{sha}").status_code == 401
    file = service.http.get(f"/api/v1/files/{sha}", headers=AUTH).json()
    assert file["size"] == len(blob) and file["state"] in ("staged", "stored")
    stats = service.http.get("/api/v1/stats").json()
    sent = stats["transfers"]["lfs_put_bytes"] + stats["transfers"]["xet_xorb_bytes"]
    assert sent >= len(blob) * 0.5 and isinstance(stats["storage"], dict)  # by Xet: LZ4-compressed xorbs


def test_openapi_documents_the_native_routes(service: RunningService) -> None:
    schema = service.http.get("/openapi.json").json()
    for path in (
        "/api/v1/health",
        "/api/v1/repos",
        "/api/v1/repos/{namespace}/{name}/commits",
        "/api/v1/files/{sha256}",
        "/api/v1/stats",
    ):
        operation = schema["paths"][path]["get"]
        assert operation["summary"]
        assert "$ref" in json.dumps(operation["responses"]["200"])
