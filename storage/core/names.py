"""Validation of the names users send: repository ids, branch names, file paths, hashes.

Every name arrives from the network, so each check is strict and says what is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from storage.core.errors import InvalidInput, InvalidPath, InvalidRepoName

# Every pattern is applied with fullmatch: `$` would also match before a final newline ("main\n").
# The Hugging Face Hub's own rule for each part of a repository id.
_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
MAX_PATH_BYTES = 1024
# Unicode categories refused in paths: controls (C0, DEL, C1), format characters (bidi overrides,
# zero-width), line and paragraph separators, and surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_CLIENT_CACHE = ".cache/huggingface/"


def split_repo_id(repo_id: str) -> tuple[str, str]:
    """"namespace/name" → (namespace, name); a bare "name" has the empty namespace."""
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise InvalidRepoName(repo_id=repo_id, reason="at most one '/' (namespace/name)")
    for part in parts:
        if not _REPO_PART.fullmatch(part):
            raise InvalidRepoName(
                repo_id=repo_id,
                reason="each part is 1-96 letters, digits, '.', '_' or '-', starting and ending alphanumeric",
            )
        if "--" in part or ".." in part:
            raise InvalidRepoName(repo_id=repo_id, reason="'--' and '..' are not allowed")
    return (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])


def check_branch(branch: str) -> str:
    if not _BRANCH.fullmatch(branch) or ".." in branch or branch.startswith("/") or branch.endswith("/"):
        raise InvalidInput(detail=f"invalid branch name {branch!r}")
    return branch


def is_commit_oid(revision: str) -> bool:
    return bool(_HEX40.fullmatch(revision))


def is_sha256(value: str) -> bool:
    """64 lowercase hex digits: a file's oid as the hub writes it."""
    return bool(_HEX64.fullmatch(value))


def check_sha256(value: str) -> str:
    if not is_sha256(value):
        raise InvalidInput(detail=f"invalid sha256 {value!r}: expected 64 lowercase hex digits")
    return value


def check_path(path: str) -> str:
    """A file path inside a repository: relative, '/'-separated UTF-8, no '.' or '..' parts, no control,
    invisible or direction-changing characters, nothing a client would refuse to write (.git)."""
    if not path:
        raise InvalidPath(path=path, reason="empty")
    if "\x00" in path:
        raise InvalidPath(path=path, reason="contains a NUL byte")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(path=path, reason="not valid UTF-8 (it holds a lone surrogate)") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(path=path, reason=f"longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise InvalidPath(path=path, reason="absolute paths are not allowed")
    if "\\" in path:
        raise InvalidPath(path=path, reason="backslashes are not allowed")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidPath(path=path, reason="empty, '.' and '..' path parts are not allowed")
    if any(unicodedata.category(c) in _HIDDEN_CATEGORIES for c in path):
        # A right-to-left override (U+202E) makes "evil\u202etxt.exe" look like "evilexe.txt".
        raise InvalidPath(path=path, reason="control, invisible and line-breaking characters are not allowed")
    if ".git" in parts or path.startswith(_CLIENT_CACHE):
        # The client writes every path into the user's folder: these would reach its git or cache state.
        raise InvalidPath(path=path, reason="'.git' and '.cache/huggingface' are reserved")
    return path


def check_tree(paths: Iterable[str]) -> None:
    """A tree cannot hold a file where another file needs a folder ("d" and "d/f"): every client's
    download would fail on it."""
    files = set(paths)
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise InvalidPath(path=folder, reason=f"it is a file, and {path!r} needs it to be a folder")
