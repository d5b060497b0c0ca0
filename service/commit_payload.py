"""The ndjson commit payload of the Hugging Face client, parsed and checked line by line.

Line 1 is ``{"key": "header", "value": {"summary", "description", "parentCommit"?}}``; every further line
is one operation: ``file`` (inline content, base64), ``lfsFile`` (a SHA-256 uploaded before),
``deletedFile`` or ``deletedFolder``. A malformed line is rejected with its line number.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from storage.core.errors import InvalidInput
from storage.core.names import is_sha256


@dataclass(frozen=True, slots=True)
class CommitHeader:
    summary: str
    description: str
    parent_oid: str | None

    @property
    def message(self) -> str:
        return f"{self.summary}\n\n{self.description}" if self.description.strip() else self.summary


@dataclass(frozen=True, slots=True)
class InlineFile:
    path: str
    content: bytes


@dataclass(frozen=True, slots=True)
class LfsFile:
    path: str
    sha256: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Deletion:
    path: str  # a folder ends with "/"


Operation = InlineFile | LfsFile | Deletion


class BadPayloadLine(InvalidInput):
    """commit payload line {line}: {reason}"""


def parse_line(number: int, line: bytes) -> CommitHeader | Operation:
    """Line `number` (1-based) of the payload; the header must be line 1 and only line 1."""
    try:
        item = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayloadLine(line=number, reason=f"not JSON ({exc})") from exc
    except RecursionError as exc:
        raise BadPayloadLine(line=number, reason="JSON nested too deeply") from exc
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise BadPayloadLine(line=number, reason='expected {"key": ..., "value": {...}}')
    key, value = item.get("key"), item["value"]
    if (key == "header") != (number == 1):
        raise BadPayloadLine(line=number, reason="the header must be the first line, and only the first")
    if key == "header":
        return _header(number, value)
    if key == "file":
        return _inline_file(number, value)
    if key == "lfsFile":
        return _lfs_file(number, value)
    if key in ("deletedFile", "deletedFolder"):
        path = _text(number, value, "path")
        return Deletion(path.rstrip("/") + "/" if key == "deletedFolder" else path)
    raise BadPayloadLine(line=number, reason=f"unknown key {key!r}")


def _text(number: int, value: dict[str, Any], field: str, default: str | None = None) -> str:
    text = value.get(field, default)
    if not isinstance(text, str):
        raise BadPayloadLine(line=number, reason=f"{field!r} must be a string")
    return text


def _header(number: int, value: dict[str, Any]) -> CommitHeader:
    summary = _text(number, value, "summary")
    if not summary.strip():
        raise BadPayloadLine(line=number, reason="the commit summary is empty")
    parent = value.get("parentCommit")
    if parent is not None and not isinstance(parent, str):
        raise BadPayloadLine(line=number, reason="'parentCommit' must be a string")
    return CommitHeader(summary, _text(number, value, "description", ""), parent)


def _inline_file(number: int, value: dict[str, Any]) -> InlineFile:
    path, content = _text(number, value, "path"), _text(number, value, "content")
    encoding = _text(number, value, "encoding", "base64")
    if encoding == "base64":
        try:
            return InlineFile(path, base64.b64decode(content, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise BadPayloadLine(line=number, reason=f"content of {path!r} is not valid base64") from exc
    if encoding in ("utf-8", "utf8"):
        return InlineFile(path, content.encode("utf-8"))
    raise BadPayloadLine(line=number, reason=f"unknown encoding {encoding!r}")


def _lfs_file(number: int, value: dict[str, Any]) -> LfsFile:
    path, oid = _text(number, value, "path"), _text(number, value, "oid")
    if _text(number, value, "algo", "sha256") != "sha256":
        raise BadPayloadLine(line=number, reason="only sha256 LFS objects are supported")
    if not is_sha256(oid):
        raise BadPayloadLine(line=number, reason=f"oid {oid!r} is not a lowercase hex SHA-256")
    size = value.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadPayloadLine(line=number, reason="'size' must be a non-negative integer")
    return LfsFile(path, oid, size)
