"""Auth over HTTP with the catalog's own tokens (as `deltahub serve` checks them).

Every write route: no token → 401, a read-only token → 403, an unknown token → 401. Every read route
of a private repository answers anyone without a token exactly as if the repository did not exist.
Tokens are stored and looked up as SHA-256 digests and compared in constant time, and no token or
secret reaches the logs, whatever happens (tests/service/test_tokens.py covers minting and revoking).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from sqlalchemy import event

from service.accounts import AccountAdmin
from service.app import create_app
from service.options import ServiceOptions
from service.tokens import CatalogTokenStore, token_digest
from storage.app.hub import Hub
from storage.settings import load_settings
from tests.reliability.server import running
from tests.service.conftest import TEST_OPTIONS

PUBLIC, PRIVATE = "alice/open", "alice/secret"
SIGNING_KEY = os.urandom(32)
S3_SECRET = "s3-secret-" + os.urandom(8).hex()


@dataclass
class Deployment:
    url: str
    hub: Hub
    writer: str
    reader: str


@pytest.fixture
def deployment(tmp_path: Path, hf_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    # An earlier uvicorn in this process (any test server) configured its access logger not to
    # propagate: with log_config=None below nobody resets that, and the log would go unseen.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "propagate", True)
    settings = load_settings(data_dir=tmp_path / "hub", secret_key=SIGNING_KEY.hex())
    hub = Hub.from_settings(settings, migrate=True)
    tokens = CatalogTokenStore(hub.session)
    # alice owns the repositories; bob administers the hub through a read-only token (reads everything).
    accounts = AccountAdmin(hub.session)
    accounts.create_user("alice")
    accounts.create_user("bob", hub_admin=True)
    writer = tokens.create("alice", can_write=True, user="alice")
    reader = tokens.create("bob", can_write=False, user="bob")
    options = replace(TEST_OPTIONS, signing_key=SIGNING_KEY)
    # Access logs on and propagated, so the test sees every line a deployment would log.
    with running(create_app(hub, settings, tokens, options=options), log_config=None, access_log=True,
                 log_level="debug") as url:
        api = HfApi(endpoint=url, token=writer)
        api.create_repo(PUBLIC)
        api.create_repo(PRIVATE, private=True)
        for repo_id in (PUBLIC, PRIVATE):
            api.upload_file(path_or_fileobj=os.urandom(20_000), path_in_repo="w.bin", repo_id=repo_id)
        yield Deployment(url, hub, writer, reader)
    hub.engine.dispose()


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


WRITES = [
    ("POST", "/api/repos/create", {"json": {"name": "new"}}),
    ("DELETE", "/api/repos/delete", {"json": {"name": "open"}}),
    ("PUT", f"/api/models/{PUBLIC}/settings", {"json": {"private": True}}),
    ("POST", f"/api/models/{PUBLIC}/preupload/main", {"json": {"files": [{"path": "a", "size": 1}]}}),
    ("POST", f"/api/models/{PUBLIC}/commit/main",
     {"content": b'{"key": "header", "value": {"summary": "s"}}\n'}),
    ("POST", f"/{PUBLIC}.git/info/lfs/objects/batch",
     {"json": {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}}),
    ("POST", "/api/v1/lfs/verify", {"json": {"oid": "a" * 64, "size": 1}}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_writes_need_a_write_token(deployment: Deployment, method: str, path: str, body: dict) -> None:
    with httpx.Client(base_url=deployment.url) as client:
        anonymous = client.request(method, path, **body)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == (
            "authentication required: this operation needs a write token (Authorization: Bearer <token>)"
        )
        read_only = client.request(method, path, headers=_bearer(deployment.reader), **body)
        assert read_only.status_code == 403
        assert read_only.json()["error"] == "forbidden: token 'bob' is read-only"
        unknown = client.request(method, path, headers=_bearer("dh_" + "x" * 43), **body)
        assert unknown.status_code == 401
        assert unknown.json()["error"] == "Invalid credentials in Authorization header"
        assert client.get(f"/{PUBLIC}/resolve/main/w.bin").status_code == 200  # nothing was changed


READS = [
    ("GET", "/{repo}/resolve/main/w.bin"),
    ("HEAD", "/{repo}/resolve/main/w.bin"),
    ("GET", "/api/models/{repo}"),
    ("GET", "/api/models/{repo}/revision/main"),
    ("GET", "/api/models/{repo}/tree/main"),
    ("POST", "/api/models/{repo}/paths-info/main"),
    ("GET", "/api/models/{repo}/refs"),
    ("GET", "/api/models/{repo}/commits/main"),
    ("GET", "/api/v1/repos/{repo}"),
    ("GET", "/api/v1/repos/{repo}/commits"),
]


@pytest.mark.parametrize(("method", "path"), READS, ids=[f"{m} {p}" for m, p in READS])
def test_private_repositories_do_not_exist_for_others(deployment: Deployment, method: str, path: str) -> None:
    with httpx.Client(base_url=deployment.url) as client:
        hidden = client.request(method, path.format(repo=PRIVATE))
        absent = client.request(method, path.format(repo="alice/nothing-here"))
        assert hidden.status_code == absent.status_code == 404
        assert hidden.headers["x-error-code"] == absent.headers["x-error-code"] == "RepoNotFound"
        assert hidden.headers["x-error-message"] == absent.headers["x-error-message"].replace("nothing-here",
                                                                                             "secret")
        for token in (deployment.reader, deployment.writer):
            assert client.request(method, path.format(repo=PRIVATE), headers=_bearer(token)).status_code == 200
    listed = httpx.get(f"{deployment.url}/api/v1/repos").json()
    assert [r["repo_id"] for r in listed] == [PUBLIC]


def test_tokens_are_stored_and_compared_as_digests(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Path(deployment.hub.settings.resolved_database_url.removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in catalog.parent.glob(catalog.name + "*"))  # the file and its WAL
    for token in (deployment.writer, deployment.reader):
        assert token.encode() not in raw
        assert token_digest(token).encode() in raw or bytes.fromhex(token_digest(token)) in raw

    sent: list[str] = []
    event.listen(deployment.hub.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, parameters, context, many: sent.append(repr(parameters)))
    compared: list[tuple[object, object]] = []
    real_compare = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real_compare(a, b))
    store = CatalogTokenStore(deployment.hub.session)
    assert store.verify(deployment.writer) is not None
    assert store.verify(deployment.writer[:-1] + "!") is None
    # The secret never reaches the database; the match is confirmed by a constant-time comparison.
    assert sent and not any(deployment.writer in p or deployment.writer[:-1] in p for p in sent)
    assert compared and all(isinstance(a, str) and len(a) == 64 for a, _ in compared)


def test_no_token_or_secret_in_the_logs(deployment: Deployment, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    wrong = "dh_" + os.urandom(24).hex()
    secrets = [deployment.writer, deployment.reader, wrong, SIGNING_KEY.hex(), token_digest(deployment.writer)]
    caplog.set_level(logging.DEBUG)
    api = HfApi(endpoint=deployment.url, token=deployment.writer)
    api.upload_file(path_or_fileobj=os.urandom(30_000), path_in_repo="x.bin", repo_id=PRIVATE)
    hf_hub_download(PRIVATE, "x.bin", endpoint=deployment.url, token=deployment.reader, cache_dir=tmp_path / "c")
    with httpx.Client(base_url=deployment.url) as client:
        client.get("/api/whoami-v2", headers=_bearer(wrong))
        client.get(f"/{PRIVATE}/resolve/main/x.bin", headers={"Authorization": f"Basic {deployment.writer}"})
        client.post("/api/repos/create", json={"name": "a b"}, headers=_bearer(deployment.writer))
        client.post(f"/api/models/{PUBLIC}/commit/main", headers=_bearer(deployment.writer),
                    content=b'{"key": "header", "value": {"summary": "s", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}}")
    settings = load_settings(data_dir=tmp_path, store_backend="s3", s3_bucket="b", s3_access_key_id="k",
                             s3_secret_access_key=S3_SECRET, secret_key=SIGNING_KEY.hex())
    logging.getLogger("deltahub.test").info("settings: %r %s", settings, settings)
    logging.getLogger("deltahub.test").info("options: %r", ServiceOptions.from_settings(settings))
    text = caplog.text
    assert "GET /api/whoami-v2" in text  # the access log was captured
    assert [s for s in [*secrets, S3_SECRET] if s in text] == []
