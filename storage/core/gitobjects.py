"""Git object ids and bytes computed from what the catalog stores, so commit ids agree with git.

A commit's id is the SHA-1 of its git commit object: its root tree, its parent, the author and
committer lines (``Name <email> <epoch seconds> <+hhmm>``) and the message, exactly as git hashes them.
A tree holds one entry per file: a blob of the file's bytes, or, for a file kept in LFS, the blob of its
git-lfs pointer (which the catalog can rebuild from the sha256 and size alone). Pure: bytes in, ids out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

FILE_MODE = b"100644"
TREE_MODE = b"40000"
POINTER_MAX_BYTES = 1024  # git-lfs reads at most this much when it looks for a pointer

_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (0|[1-9][0-9]{0,18})\n\Z"
)


def object_id(kind: bytes, content: bytes) -> str:
    return hashlib.sha1(b"%s %d\x00" % (kind, len(content)) + content, usedforsecurity=False).hexdigest()


def blob_id(content: bytes) -> str:
    """The id git gives a blob of these bytes."""
    return object_id(b"blob", content)


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def parse_pointer(content: bytes) -> tuple[str, int] | None:
    """(sha256, size) of a canonical git-lfs pointer, None for any other blob."""
    if len(content) > POINTER_MAX_BYTES:
        return None
    match = _POINTER.match(content)
    return (match.group(1).decode(), int(match.group(2))) if match else None


@dataclass(frozen=True, slots=True)
class GitBlob:
    """How one tree entry is held in git: an LFS pointer (sha256, size) or a blob of the file's bytes."""

    lfs: bool
    oid: str  # the git blob id: of the pointer when lfs, else of the bytes

    @classmethod
    def pointer(cls, sha256: str, size: int) -> GitBlob:
        return cls(True, blob_id(lfs_pointer(sha256, size)))


def tree_objects(entries: Mapping[str, str]) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """Git trees for files (path → blob id): the root id, every tree's bytes by id, and the id of
    each directory by path ("" is the root)."""
    children: dict[str, dict[bytes, tuple[bytes, str]]] = {"": {}}
    for path in entries:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            children.setdefault(folder, {})
    for path, oid in entries.items():
        folder, _, name = path.rpartition("/")
        children[folder][name.encode()] = (FILE_MODE, oid)
    trees: dict[str, bytes] = {}
    ids: dict[str, str] = {}
    for folder in sorted(children, key=lambda f: f.count("/") + (1 if f else 0), reverse=True):
        content = tree_bytes(children[folder].items())
        oid = object_id(b"tree", content)
        trees[oid], ids[folder] = content, oid
        if folder:
            parent, _, name = folder.rpartition("/")
            children[parent][name.encode()] = (TREE_MODE, oid)
    return ids[""], trees, ids


def tree_bytes(items: Iterable[tuple[bytes, tuple[bytes, str]]]) -> bytes:
    """A tree object's content; git orders entries by name, a directory's name as if it ended in '/'."""
    ordered = sorted(items, key=lambda item: item[0] + (b"/" if item[1][0] == TREE_MODE else b""))
    return b"".join(mode + b" " + name + b"\x00" + bytes.fromhex(oid) for name, (mode, oid) in ordered)


def identity(name: str, when: datetime, email: str | None = None) -> str:
    """An author or committer line for a commit made here: UTC, whole seconds."""
    clean = "".join(c for c in name if c not in "<>\n\0").strip() or "deltahub"
    mail = email or f"{clean.replace(' ', '-')}@users.noreply.deltahub"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{clean} <{mail}> {int(when.timestamp())} +0000"


def commit_bytes(tree: str, parent: str | None, author: str, committer: str, message: str) -> bytes:
    lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else []) + [f"author {author}", f"committer {committer}"]
    return ("\n".join(lines) + "\n\n" + message).encode()


def commit_id(tree: str, parent: str | None, author: str, committer: str, message: str) -> str:
    return object_id(b"commit", commit_bytes(tree, parent, author, committer, message))
