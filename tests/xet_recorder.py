"""A throwaway Xet CAS server on 127.0.0.1 that records what the real `hf_xet` client uploads.

It answers just enough of the CAS API for an upload to finish: the global-dedup query says "no such
chunk" (404) unless a shard was registered for it, every xorb and shard POST is accepted and kept
byte for byte, telemetry is swallowed. `hf_xet` 1.8.0 also tries `POST /v1/xorb-grants/...` and
`POST /v2/shards` first; both get a 404 here, and the client falls back to the v1 routes. It also
answers the Hub's `xet-write-token` route, so `huggingface_hub` can be pointed at it with
`HF_ENDPOINT` for the token step. Nothing is verified here: the point is to capture what the client
really sends, so tests can check the parsers against it.

    with XetRecorder() as cas:
        hf_xet.upload_bytes([data], cas.url, ("token", far_future), None, None, "model")
        cas.xorbs      # {hex hash from the URL: serialized xorb bytes}
        cas.shards     # [shard bytes, in upload order]
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import pytest

_XORB = re.compile(r"^/v1/xorbs/([^/]+)/([0-9a-f]{64})$")
_CHUNK = re.compile(r"^/v1/chunks/([^/]+)/([0-9a-f]{64})$")
_RECONSTRUCTION = re.compile(r"^/v1/reconstructions/([0-9a-f]{64})$")
_XORB_BYTES = re.compile(r"^/xorb-bytes/([0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
_TOKEN = re.compile(r"^/api/[a-z]+s/.+/xet-(write|read)-token/.+$")
TOKEN = "recorder-token"
TOKEN_LIFETIME_SECONDS = 3600


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class XetRecorder:
    """A context manager: the server runs between enter and exit, on a free port."""

    requests: list[Request] = field(default_factory=list)
    xorbs: dict[str, bytes] = field(default_factory=dict)
    shards: list[bytes] = field(default_factory=list)
    # Answers to the global-dedup query, by chunk hash hex; absent means 404.
    dedup_answers: dict[str, bytes] = field(default_factory=dict)
    # For downloads: reconstruction JSON by file hash hex, and xorb bytes served (with Range) at
    # `{url}/xorb-bytes/{hex}` by xorb hash hex.
    reconstructions: dict[str, object] = field(default_factory=dict)
    served_xorbs: dict[str, bytes] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "the recorder is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> XetRecorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    return self.rfile.read(length)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return _read_chunked(self.rfile)
                return b""

            def _reply(
                self,
                status: int,
                body: bytes = b"",
                content_type: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                path = self.path.split("?", 1)[0]
                with recorder._lock:
                    recorder.requests.append(Request(self.command, path, dict(self.headers.items()), body))
                if self.command == "GET" and _TOKEN.match(path):
                    # huggingface_hub reads the headers; the body carries the same for other clients.
                    expiry = int(time.time()) + TOKEN_LIFETIME_SECONDS
                    answer = {"accessToken": TOKEN, "exp": expiry, "casUrl": recorder.url}
                    headers = {
                        "X-Xet-Cas-Url": recorder.url,
                        "X-Xet-Access-Token": TOKEN,
                        "X-Xet-Token-Expiration": str(expiry),
                    }
                    self._reply(200, json.dumps(answer).encode(), headers=headers)
                elif self.command == "POST" and (match := _XORB.match(path)):
                    with recorder._lock:
                        inserted = match.group(2) not in recorder.xorbs
                        recorder.xorbs[match.group(2)] = body
                    self._reply(200, json.dumps({"was_inserted": inserted}).encode())
                elif self.command == "POST" and path == "/v1/shards":
                    with recorder._lock:
                        recorder.shards.append(body)
                    self._reply(200, json.dumps({"result": 1}).encode())
                elif self.command == "GET" and (match := _CHUNK.match(path)):
                    answer_bytes = recorder.dedup_answers.get(match.group(2))
                    if answer_bytes is None:
                        self._reply(404, b"")
                    else:
                        self._reply(200, answer_bytes, "application/octet-stream")
                elif self.command == "GET" and (match := _RECONSTRUCTION.match(path)):
                    plan = recorder.reconstructions.get(match.group(1))
                    if plan is None:
                        self._reply(404, b"")
                    else:
                        self._reply(200, json.dumps(plan).encode())
                elif self.command == "GET" and (match := _XORB_BYTES.match(path)):
                    self._serve_range(recorder.served_xorbs.get(match.group(1)))
                elif path == "/v1/telemetry":
                    self._reply(200, b"{}")
                else:
                    self._reply(404, b"")

            def _serve_range(self, body: bytes | None) -> None:
                if body is None:
                    self._reply(404, b"")
                    return
                wanted = _RANGE.match(self.headers.get("Range", ""))
                if wanted is None:
                    self._reply(200, body, "application/octet-stream")
                    return
                start, end = int(wanted.group(1)), min(int(wanted.group(2)), len(body) - 1)
                headers = {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
                self._reply(206, body[start : end + 1], "application/octet-stream", headers)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="xet-recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def token_info(self) -> tuple[str, int]:
        """What `hf_xet.upload_*` takes as `token_info`."""
        return TOKEN, int(time.time()) + TOKEN_LIFETIME_SECONDS


@pytest.fixture
def xet_recorder() -> Iterator[XetRecorder]:
    """A running recorder, for a test module that imports this fixture (or lists this module in
    `pytest_plugins`)."""
    with XetRecorder() as recorder:
        yield recorder


def _read_chunked(stream: object) -> bytes:
    read = stream.read  # type: ignore[attr-defined]
    readline = stream.readline  # type: ignore[attr-defined]
    parts: list[bytes] = []
    while True:
        size = int(readline().split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            readline()
            return b"".join(parts)
        parts.append(read(size))
        readline()
