"""What a pull-through mirror learns from its upstream hub, and which repositories it mirrors.

Pure records and rules: the HTTP adapter (storage/upstream/) fills the records, the mirror use case
(storage/app/mirror.py) decides with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

RefKindName = Literal["branch", "tag", "commit"]


@dataclass(frozen=True, slots=True)
class UpstreamFile:
    """One file of an upstream commit. `sha256` is the LFS oid (None for a file the upstream keeps in
    git); `git_oid` is its git blob id, the only hash the Hub gives for such a file."""

    path: str
    size: int
    sha256: str | None
    git_oid: str

    @property
    def claim_key(self) -> str:
        """What names the content while it is fetched (one fetch per content, whoever asks)."""
        return f"sha256:{self.sha256}" if self.sha256 else f"git:{self.git_oid}"


@dataclass(frozen=True, slots=True)
class UpstreamRevision:
    """A revision as the upstream resolves it: the commit id, what the name is, the commit's files."""

    commit: str
    kind: RefKindName
    private: bool
    files: tuple[UpstreamFile, ...]


def is_mirrored(repo_id: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    """Whether `repo_id` ("namespace/name") is mirrored: it matches an allow glob and no deny glob.

    Globs are matched case-sensitively against the whole id ("org/*" is a namespace, "org/bert-*" a
    family of names, "*" everything); deny wins.
    """
    if any(fnmatchcase(repo_id, pattern) for pattern in deny):
        return False
    return any(fnmatchcase(repo_id, pattern) for pattern in allow)


class ContentCheck:
    """Hashes the bytes of an upstream file as they arrive; `problem()` says how they differ from what
    the upstream claimed (None when they match)."""

    def __init__(self, file: UpstreamFile) -> None:
        self._file = file
        self._sha256 = hashlib.sha256()
        self._git = hashlib.sha1(b"blob %d\x00" % file.size, usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._sha256.update(chunk)
        self._git.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def problem(self) -> str | None:
        f = self._file
        if self.size != f.size:
            return f"{f.path}: received {self.size} bytes, the upstream lists {f.size}"
        if f.sha256 is not None and self.sha256 != f.sha256:
            return f"{f.path}: bytes hash to sha256 {self.sha256}, the upstream's LFS oid is {f.sha256}"
        if f.sha256 is None and self._git.hexdigest() != f.git_oid:
            return f"{f.path}: bytes hash to git blob {self._git.hexdigest()}, the upstream lists {f.git_oid}"
        return None
