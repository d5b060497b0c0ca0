"""Listing a commit's tree the way the Hub does: one directory or everything below it, paged.

Pure functions over the hub's sorted file list. Directories are not stored; they are implied by file
paths, and a directory's oid is a digest of every file below it, so it changes exactly when they do.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any

from service.hf_json import tree_directory, tree_file
from storage.app.views import TreeEntry


def list_tree(entries: list[TreeEntry], directory: str, *, recursive: bool) -> list[dict[str, Any]] | None:
    """Entries under `directory` ("" for the root), sorted by path; None if no such directory."""
    prefix = directory.strip("/") + "/" if directory.strip("/") else ""
    digests: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
    for entry in entries:
        if not entry.path.startswith(prefix):
            continue
        parts = entry.path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            if not recursive and depth > 1:
                break
            below = prefix + "/".join(parts[:depth])
            digest = digests.setdefault(below, hashlib.sha1(usedforsecurity=False))
            digest.update(f"{entry.path}\x00{entry.file.sha256}\n".encode())
        if recursive or len(parts) == 1:
            listed.append(tree_file(entry))
    if prefix and not listed and not digests:
        return None
    listed.extend(tree_directory(path, digest.hexdigest()) for path, digest in digests.items())
    listed.sort(key=lambda item: item["path"])
    return listed


def page_after(items: list[dict[str, Any]], cursor: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
    """The `size` items whose path sorts after `cursor`, and the cursor of the next page (None: last)."""
    paths = [item["path"] for item in items]
    start = 0 if cursor is None else bisect.bisect_right(paths, cursor)
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, (chunk[-1]["path"] if more and chunk else None)
