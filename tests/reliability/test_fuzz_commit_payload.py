"""Fuzzing the commit ndjson parser (service/commit_payload.py, service/streams.py) with hypothesis.

Whatever the bytes, a line parses to a header or an operation that keeps the format's promises, or is
refused with BadPayloadLine naming its line: never any other exception (which would be a 500). The
number of examples is fixed here, not taken from the profile, so CI runs a known, bounded amount; the
safetensors parser is fuzzed in tests/storage/test_safetensors.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.commit_payload import BadPayloadLine, CommitHeader, Deletion, InlineFile, LfsFile, parse_line
from service.errors import PayloadTooLarge
from service.streams import ndjson_lines
from tests.reliability.figures import FIGURES

KEYS = ["header", "file", "lfsFile", "deletedFile", "deletedFolder", "copyFile", "", "HEADER"]
FIELDS = ["summary", "description", "parentCommit", "path", "content", "encoding", "oid", "algo", "size"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["base64", "utf-8", "sha256", "a" * 64, "0f" * 32, "aGk=", "..", "/x", "a\x00b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4),
                                                                inner, max_size=4),
    max_leaves=12,
)
LINE_OBJECTS = st.fixed_dictionaries(
    {"key": st.sampled_from(KEYS) | JSON_VALUES},
    optional={"value": st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6) | JSON_VALUES},
)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _check(number: int, line: bytes) -> None:
    FIGURES.add(fuzz_iterations=1)
    try:
        item = parse_line(number, line)
    except BadPayloadLine as err:
        assert err.message.startswith(f"commit payload line {number}: ")
        assert err.status == 400
        return
    # Accepted: what the parser hands the route keeps the format's promises.
    assert isinstance(item, CommitHeader) == (number == 1)
    if isinstance(item, CommitHeader):
        assert item.summary.strip() and (item.parent_oid is None or isinstance(item.parent_oid, str))
    elif isinstance(item, InlineFile):
        assert isinstance(item.path, str) and isinstance(item.content, bytes)
    elif isinstance(item, LfsFile):
        assert len(item.sha256) == 64 and set(item.sha256) <= set("0123456789abcdef")
        assert item.size is None or (type(item.size) is int and item.size >= 0)
    else:
        assert isinstance(item, Deletion) and isinstance(item.path, str)


@fuzz(500)
@given(st.integers(1, 4), st.binary(max_size=200) | st.integers(1, 50_000).map(
    lambda depth: b'{"key": "file", "value": {"path": ' + b"[" * depth + b"]" * depth + b"}}"))
def test_fuzz_random_bytes(number: int, line: bytes) -> None:
    _check(number, line)


@fuzz(500)
@given(st.integers(1, 4), LINE_OBJECTS)
def test_fuzz_structured_lines(number: int, document: dict) -> None:
    _check(number, json.dumps(document).encode())


VALID_LINES = [
    {"key": "header", "value": {"summary": "add", "description": "", "parentCommit": "a" * 40}},
    {"key": "file", "value": {"path": "a/b.txt", "content": base64.b64encode(b"hello").decode(), "encoding": "base64"}},
    {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0f" * 32, "size": 10}},
    {"key": "deletedFile", "value": {"path": "old.bin"}},
    {"key": "deletedFolder", "value": {"path": "dir"}},
]


@fuzz(400)
@given(st.sampled_from(VALID_LINES), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3), st.binary(max_size=3)),
                                              min_size=1, max_size=4))
def test_fuzz_mutated_valid_lines(document: dict, edits: list[tuple[int, int, bytes]]) -> None:
    line = bytearray(json.dumps(document).encode())
    for where, drop, insert in edits:
        at = where % (len(line) + 1)
        line[at : at + drop] = insert
    _check(1 if document["key"] == "header" else 2, bytes(line))


async def _body(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _parse_payload(chunks: list[bytes], max_line: int, max_total: int) -> int:
    number = 0
    async for line in ndjson_lines(_body(chunks), max_line=max_line, max_total=max_total):
        number += 1
        _check(number, line)
    return number


@fuzz(200)
@given(st.lists(LINE_OBJECTS.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=40), max_size=6),
       st.lists(st.integers(0, 2000), max_size=6), st.integers(16, 400))
def test_fuzz_whole_payloads_in_any_chunking(lines: list[bytes], cuts: list[int], max_line: int) -> None:
    body = b"\n".join(lines)
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    try:
        asyncio.run(_parse_payload(chunks, max_line=max_line, max_total=1000))
    except (BadPayloadLine, PayloadTooLarge) as err:
        assert err.status in (400, 413)
