"""A real deltahub API server on 127.0.0.1 (uvicorn in a thread) over a real Hub in tmp_path, and the
unmodified huggingface_hub client pointed at it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import huggingface_hub
import huggingface_hub.constants as hf_constants
import huggingface_hub.utils
import pytest
import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.auth import StaticTokenStore, TokenInfo, TokenStore
from service.options import ServiceOptions
from service.tokens import CatalogTokenStore
from storage.app.hub import Hub
from storage.settings import load_settings
from workers.inprocess import InProcessQueue
from workers.runtime import open_hub

WRITE_TOKEN = "dh-write-alice"
READ_TOKEN = "dh-read-bob"
# Two hub administrators: alice's token may do everything, bob's reads everything (a read-only token).
# The authorization matrix (tests/service/test_authorization_matrix.py) covers every other kind of caller.
TOKENS = StaticTokenStore({
    WRITE_TOKEN: TokenInfo("alice", True, hub_admin=True, token_name="alice"),
    READ_TOKEN: TokenInfo("bob", False, hub_admin=True, token_name="bob"),
})

# Small enough that a few test files page the tree listing, and that a file of a few KiB goes by LFS.
TEST_OPTIONS = ServiceOptions(tree_page_size=3, commits_page_size=2, regular_file_max_bytes=4096)


@dataclass
class RunningService:
    url: str
    hub: Hub
    app: FastAPI
    http: httpx.Client

    def counters(self) -> dict[str, int]:
        return self.http.get("/api/v1/stats").json()["transfers"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(
    tmp_path: Path, options: ServiceOptions, *, ingest: bool = False, settings: dict[str, object] | None = None,
    catalog_tokens: bool = False,
    tokens: TokenStore = TOKENS,
) -> Iterator[RunningService]:
    """Serve a new hub; with `ingest`, commits are ingested by the embedded worker, as `deltahub serve` does.
    `settings` overrides fields of the hub's settings (the mirror's upstream, ...); `tokens` the callers,
    or with `catalog_tokens`, bearer tokens are checked against the hub's catalog (as `deltahub serve` does)."""
    settings_ = load_settings(data_dir=tmp_path / "hub", **(settings or {}))
    hub = open_hub(settings_) if ingest else Hub.from_settings(settings_, migrate=True)
    if catalog_tokens:
        tokens = CatalogTokenStore(hub.session)
    app = create_app(hub, hub.settings, tokens, options=options)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=30) as http:
        yield RunningService(url, hub, app, http)
    server.should_exit = True
    thread.join(timeout=10)
    if isinstance(hub.queue, InProcessQueue):
        hub.queue.close()


@pytest.fixture
def hf_client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME and Xet cache, no implicit token, online, and nothing switched off: the client
    uploads LFS-sized files through Xet (hf_xet is installed), as it does by default.

    The client reads these at import time, so its constants are patched as well as the environment.
    Tests of the LFS path itself add the `lfs_client` fixture.
    """
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    monkeypatch.setenv("HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_XET_CACHE", str(home / "xet"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    huggingface_hub.utils.disable_progress_bars()
    return home / "hub"


@pytest.fixture
def lfs_client(hf_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client with Xet switched off (HF_HUB_DISABLE_XET=1): uploads take the LFS batch and PUT path."""
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture(params=["xet", "lfs"])
def transport(request: pytest.FixtureRequest, hf_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once per large-file path of the client: Xet (its default) and LFS (Xet switched off)."""
    if request.param == "lfs":
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    return str(request.param)


@pytest.fixture
def service(tmp_path: Path, hf_client_env: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path, TEST_OPTIONS)


@pytest.fixture
def ingesting_service(tmp_path: Path, hf_client_env: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path, TEST_OPTIONS, ingest=True)


@pytest.fixture
def make_service(tmp_path: Path, hf_client_env: Path) -> Iterator:
    """Start a service with other options: make_service(max_commit_bytes=...)."""
    stack: list[Iterator[RunningService]] = []

    def make(**changes: object) -> RunningService:
        runner = start_service(tmp_path / f"s{len(stack)}", replace(TEST_OPTIONS, **changes))
        stack.append(runner)
        return next(runner)

    yield make
    for runner in stack:
        next(runner, None)


@pytest.fixture
def api(service: RunningService) -> huggingface_hub.HfApi:
    return huggingface_hub.HfApi(endpoint=service.url, token=WRITE_TOKEN)
