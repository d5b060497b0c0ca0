"""Hostile request builders for test_hostile_input.py: each returns the server's answer to one bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

REPO = "alice/target"
WRITER = {"Authorization": "Bearer dh-write-alice"}  # tests/service/conftest.py's write token
COMMIT_URL = f"/api/models/{REPO}/commit/main"
HEADER_LINE = {"key": "header", "value": {"summary": "hostile", "description": ""}}


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[httpx.Client], httpx.Response]
    status: int
    message: str  # the error body's "error", exactly; "" where a success status carries no error
    exact: bool = True  # False: `message` must start the error (the rest names a random key or hash)


@dataclass(frozen=True)
class FileCase:
    """A hostile model file pushed as git-lfs pushes it (LFS PUT, then an lfsFile commit) and ingested:
    the commit's answer, then what is stored. A refused commit (a 4xx) stores nothing at the path."""

    name: str
    path: str
    build: Callable[[], bytes]  # the file's bytes (tests/reliability/hostile_files.py), built when sent
    status: int  # of the commit
    message: str  # the commit's error, exactly; "" when it is accepted
    kind: str = ""  # the stored file's format id (catalog kind) after ingest; "" when refused
    tensors: tuple[str, ...] = ()  # the tensors its stored segments name
    reason: str = ""  # the parser's refusal, in the one line ingest logs for the file; "" when none


def push_file(client: httpx.Client, path: str, data: bytes) -> httpx.Response:
    """Upload `data` through the LFS batch API and PUT (unless the hub holds it already), then commit it
    at `path` (an lfsFile line)."""
    oid = hashlib.sha256(data).hexdigest()
    body = {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "objects": [{"oid": oid, "size": len(data)}]}
    answer = client.post(f"/{REPO}.git/info/lfs/objects/batch", json=body, headers=WRITER).json()["objects"][0]
    if "actions" in answer:
        put = client.put(answer["actions"]["upload"]["href"], content=data)
        assert put.status_code == 200, put.text
    return commit(client, {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)}})


def ndjson(*items: object) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def commit(client: httpx.Client, *ops: object, url: str = COMMIT_URL) -> httpx.Response:
    return client.post(url, content=ndjson(HEADER_LINE, *ops), headers=WRITER)


def inline(path: str, data: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def commit_file(path: str, data: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: commit(client, inline(path, data))


def safetensors(header: bytes | dict, data: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def tensor(dtype: str, shape: list, start: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def bad_model(header: bytes | dict, data: bytes = b"") -> Callable[[httpx.Client], httpx.Response]:
    return commit_file("model.safetensors", safetensors(header, data))


def upload_url(client: httpx.Client, data: bytes, size: int | None = None) -> str:
    """A signed LFS upload URL for `data` (announced with `size`, by default its true size)."""
    body = {"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data) if size is None else size}]}
    answer = client.post(f"/{REPO}.git/info/lfs/objects/batch", json=body, headers=WRITER).json()
    return answer["objects"][0]["actions"]["upload"]["href"]


def stream(data: bytes, piece: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def put_declared(size: int, sent: int, *, chunked: bool = False, other_bytes: bool = False
                 ) -> Callable[[httpx.Client], httpx.Response]:
    """PUT `sent` bytes to a URL signed for the first `size` bytes of a random blob."""

    def send(client: httpx.Client) -> httpx.Response:
        data = os.urandom(max(size, sent))
        url = upload_url(client, data[:size])
        body = os.urandom(sent) if other_bytes else data[:sent]
        return client.put(url, content=stream(body) if chunked else body)

    return send


def get(path: str, **headers: str) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.get(path, headers=headers)


def post_json(path: str, body: object) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(path, json=body, headers=WRITER)


def post_bytes(path: str, body: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(path, content=body, headers={**WRITER, "Content-Type": "application/json"})


def pkt(line: bytes | None) -> bytes:
    """One git pkt-line (None: the flush packet)."""
    return b"0000" if line is None else b"%04x" % (len(line) + 4) + line


def push_command() -> bytes:
    """A receive-pack request's command list: create refs/heads/hostile at a commit the pack would hold."""
    return pkt(b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/hostile\0report-status side-band-64k\n") + pkt(None)


def tiny_pack() -> bytes:
    """A well-formed pack of one blob, made by dulwich."""
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.objects import Blob
    from dulwich.pack import write_pack_objects

    out = io.BytesIO()
    write_pack_objects(out.write, [(Blob.from_string(b"hostile\n"), None)], object_format=DEFAULT_OBJECT_FORMAT)
    return out.getvalue()


def corrupt_checksum(pack: bytes) -> bytes:
    return pack[:-1] + bytes([pack[-1] ^ 0xFF])


def post_git(path: str, body: bytes, headers: dict[str, str] | None = None) -> Callable[[httpx.Client], httpx.Response]:
    kind = path.rsplit("/", 1)[-1]
    sent = {**WRITER, "Content-Type": f"application/x-{kind}-request", **(headers or {})}
    return lambda client: client.post(path, content=body, headers=sent)
