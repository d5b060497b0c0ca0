from __future__ import annotations

import base64
import json

import pytest

from service.commit_payload import BadPayloadLine, CommitHeader, Deletion, InlineFile, LfsFile, parse_line


def line(key: str, **value: object) -> bytes:
    return json.dumps({"key": key, "value": value}).encode()


def test_operations() -> None:
    header = parse_line(1, line("header", summary="add", description="why", parentCommit="a" * 40))
    assert header == CommitHeader("add", "why", "a" * 40)
    assert header.message == "add\n\nwhy"
    assert CommitHeader("add", " ", None).message == "add"
    content = base64.b64encode(b"\x00\x01").decode()
    assert parse_line(2, line("file", path="a", content=content, encoding="base64")) == InlineFile("a", b"\x00\x01")
    assert parse_line(2, line("file", path="a", content="é", encoding="utf-8")) == InlineFile("a", "é".encode())
    sha = "0f" * 32
    assert parse_line(3, line("lfsFile", path="w", algo="sha256", oid=sha, size=3)) == LfsFile("w", sha, 3)
    assert parse_line(3, line("lfsFile", path="w", algo="sha256", oid=sha)) == LfsFile("w", sha, None)
    assert parse_line(4, line("deletedFile", path="x/y")) == Deletion("x/y")
    assert parse_line(4, line("deletedFolder", path="x")) == Deletion("x/")


@pytest.mark.parametrize(
    ("number", "raw", "reason"),
    [
        (1, b"{", "not JSON"),
        (1, b"[1]", "expected"),
        (2, line("header", summary="s"), "first line"),
        (1, line("deletedFile", path="a"), "first line"),
        (1, line("header", summary=" "), "summary is empty"),
        (2, line("file", path="a", content="***"), "not valid base64"),
        (2, line("file", path="a", content="", encoding="rot13"), "unknown encoding"),
        (2, line("file", path=3, content=""), "'path' must be a string"),
        (2, line("lfsFile", path="a", oid="A" * 64), "lowercase hex"),
        (2, line("lfsFile", path="a", oid="a" * 64, algo="md5"), "only sha256"),
        (2, line("lfsFile", path="a", oid="a" * 64, size=-1), "non-negative"),
        (2, line("lfsFile", path="a", oid="a" * 64, size=True), "non-negative"),
        (5, line("copyFile", path="a"), "unknown key"),
    ],
)
def test_bad_lines_are_named(number: int, raw: bytes, reason: str) -> None:
    with pytest.raises(BadPayloadLine) as err:
        parse_line(number, raw)
    assert err.value.message.startswith(f"commit payload line {number}: ")
    assert reason in err.value.message
