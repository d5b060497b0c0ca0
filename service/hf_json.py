"""The JSON shapes the Hugging Face client parses, built from the hub's records.

Every file is content-addressed by its SHA-256, so every file is described the way the Hub describes an
LFS file: its ``oid`` is the git blob id of its LFS pointer, and ``lfs`` carries the SHA-256 and size.
That keeps listings cheap (no file is read to compute a git SHA-1) and lets the client copy any file by
reference.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from storage.app.views import CommitInfo, RefInfo, RepoInfo, RepoListing, TreeEntry


def git_blob_sha1(content: bytes) -> str:
    """The id git gives a blob (what the client compares for files it sends inline)."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def hub_time(moment: datetime) -> str:
    """The one timestamp format the client parses: UTC, milliseconds, 'Z'."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the catalog stores UTC; SQLite drops the zone
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def tree_file(entry: TreeEntry) -> dict[str, Any]:
    """As the Hub lists a file: an LFS file with its pointer's blob id and the `lfs` field; a file git
    holds as a blob of its bytes (small ones, committed inline) with that blob's id and no `lfs` field,
    so the listing says what `git clone` gets."""
    sha, size = entry.file.sha256, entry.file.size
    listed: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": size, "path": entry.path}
    if entry.lfs:
        pointer = lfs_pointer(sha, size)
        listed["oid"] = entry.git_oid or git_blob_sha1(pointer)
        listed["lfs"] = {"oid": sha, "size": size, "pointerSize": len(pointer)}
    return listed


def tree_directory(path: str, oid: str) -> dict[str, Any]:
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def sibling(entry: TreeEntry, *, blobs: bool) -> dict[str, Any]:
    if not blobs:
        return {"rfilename": entry.path}
    described = tree_file(entry)
    listed: dict[str, Any] = {"rfilename": entry.path, "size": entry.file.size, "blobId": described["oid"]}
    if "lfs" in described:
        lfs = described["lfs"]
        listed["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
    return listed


def model_info(repo: RepoInfo, commit: CommitInfo | None, entries: list[TreeEntry], *, blobs: bool) -> dict[str, Any]:
    """What model_info and dataset_info parse (a dataset has no "modelId")."""
    return {
        **repo_summary(repo, commit),
        "siblings": [sibling(e, blobs=blobs) for e in entries],
        "usedStorage": sum(e.file.size for e in entries) if blobs else None,
    }


def repo_summary(repo: RepoInfo, commit: CommitInfo | None) -> dict[str, Any]:
    """A repository as listings show it (list_models, list_datasets): model_info without the files."""
    out: dict[str, Any] = {
        "_id": str(repo.id),
        "id": repo.repo_id,
        "author": repo.namespace or None,
        "sha": commit.oid if commit else None,
        "lastModified": hub_time(commit.created_at if commit else repo.created_at),
        "createdAt": hub_time(repo.created_at),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
    }
    if repo.repo_type == "model":
        out["modelId"] = repo.repo_id
    return out


def listing_item(item: RepoListing) -> dict[str, Any]:
    return repo_summary(item.repo, item.head)


def storage_item(item: RepoListing) -> dict[str, Any]:
    """One row of /api/settings/repositories (list_user_repos, `hf repos ls`)."""
    moment = item.head.created_at if item.head else item.repo.created_at
    return {
        "id": item.repo.repo_id,
        "type": item.repo.repo_type,
        "updatedAt": hub_time(moment),
        "visibility": "private" if item.repo.private else "public",
        "storage": item.size or 0,
    }


def last_commit(commit: CommitInfo) -> dict[str, str]:
    """The `lastCommit` of an expanded tree entry."""
    return {"id": commit.oid, "title": commit.message.partition("\n")[0], "date": hub_time(commit.created_at)}


def commit_item(commit: CommitInfo) -> dict[str, Any]:
    title, _, body = commit.message.partition("\n")
    return {
        "id": commit.oid,
        "authors": [{"user": commit.author}] if commit.author else [],
        "date": hub_time(commit.created_at),
        "title": title,
        "message": body.strip("\n"),
    }


def ref_item(ref: RefInfo) -> dict[str, str]:
    prefix = "refs/tags/" if ref.kind == "tag" else "refs/heads/"
    return {"name": ref.name, "ref": prefix + ref.name, "targetCommit": ref.commit_oid}
