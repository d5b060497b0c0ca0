"""An HTTP proxy between a mirror and its upstream deltahub, for the mirror tests: it records every
request (method, path, Range), and on demand goes away (its port closed), cuts a download mid-body,
slows bodies down, or lies (flips a byte of every download). The upstream behind it is a real deltahub."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class Behaviour:
    lie: bool = False
    # Seconds slept before each download body is sent.
    slow: float = 0.0
    # The next download whose path ends with `cut_path`: send `cut_after` bytes, drop the connection,
    # and close the port for `down_for` seconds.
    cut_path: str | None = None
    cut_after: int = 0
    down_for: float = 0.0
    seen: list[Seen] = field(default_factory=list)


class UpstreamProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._http = httpx.Client(timeout=60)
        self.start()

    # Lifecycle

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                proxy._forward(self)

            do_HEAD = do_POST = do_GET

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            open_now, self._connections = list(self._connections), set()
        for connection in open_now:  # kept-alive connections go too: the upstream is gone
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop()
        self._http.close()

    def downloads(self, path_suffix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.behaviour.seen if "/resolve/" in s.path and s.path.endswith(path_suffix)]

    def requests_for(self, fragment: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.behaviour.seen if fragment in s.path]

    # Forwarding

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        b = self.behaviour
        with self._lock:
            b.seen.append(Seen(handler.command, handler.path, handler.headers.get("Range")))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = f"127.0.0.1:{self.port}"  # links the upstream hands out point back here
        answer = self._http.request(handler.command, self.upstream + handler.path, headers=headers, content=body)
        content = answer.content
        download = "/resolve/" in handler.path and handler.command == "GET" and answer.status_code in (200, 206)
        if download and b.lie and content:
            content = bytes([content[0] ^ 0xFF]) + content[1:]
        handler.send_response(answer.status_code)
        for key, value in answer.headers.multi_items():
            if key.lower() not in HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if download and b.slow:
            time.sleep(b.slow)
        if download and b.cut_path and handler.path.endswith(b.cut_path) and len(content) > b.cut_after:
            b.cut_path = None
            handler.wfile.write(content[: b.cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            down_for = b.down_for
            threading.Thread(target=self._outage, args=(down_for,), daemon=True).start()
            return
        handler.wfile.write(content)

    def _outage(self, seconds: float) -> None:
        self.stop()
        time.sleep(seconds)
        self.start()
