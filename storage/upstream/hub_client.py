"""A client of any server speaking the Hub API (the public Hub, another deltahub), for the mirror.

It asks what the mirror needs and nothing more: a revision's commit id and privacy
(`/api/{models,datasets}/{repo}/revision/{rev}`), whether a name is a branch or a tag (`.../refs`), the
commit's files with their LFS oids (`.../tree/{commit}?recursive=true`, paged by `Link`), and a file's
bytes (`/{repo}/resolve/{commit}/{path}`), resumed with `Range` when the transfer breaks.

Everything the upstream says is hostile input: paths, hashes and sizes are checked, a `Link` to another
origin is refused (the token would follow it), and httpx's errors stop here, mapped to UpstreamError,
UpstreamUnavailable (unreachable, 5xx, 429) or RepoNotFound / RevisionNotFound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from storage.core.errors import (
    DeltahubError,
    RepoNotFound,
    RevisionNotFound,
    UpstreamError,
    UpstreamMismatch,
    UpstreamUnavailable,
)
from storage.core.names import check_path, check_sha256, is_commit_oid
from storage.core.upstream import RefKindName, UpstreamFile, UpstreamRevision

# A tree larger than this is refused: the Hub itself caps repositories near 100k files.
MAX_FILES = 200_000
MAX_PAGES = 10_000
# Between resume attempts, doubling up to the cap: a restarting server is usually back within seconds.
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 2.0


class _Broken(Exception):
    """A transfer that stopped before its end; resumed from where it stopped."""


class HubUpstream:
    def __init__(self, endpoint: str, token: str | None, *, timeout: float, resume_seconds: float) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._origin = _origin(self.endpoint)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Redirects are followed (the Hub sends downloads to its CDN); httpx drops the token on a
        # redirect to another origin.
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=True)
        self._resume_seconds = resume_seconds

    def close(self) -> None:
        self._http.close()

    # Revisions

    def revision(self, repo_type: str, repo_id: str, revision: str) -> UpstreamRevision:
        api = f"{self.endpoint}/api/{'datasets' if repo_type == 'dataset' else 'models'}/{repo_id}"
        info = self._json(f"{api}/revision/{quote(revision, safe='')}", repo_id, revision)
        commit = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not is_commit_oid(commit):
            raise UpstreamError(detail=f"{repo_id}@{revision}: the upstream gave no 40-hex commit id")
        kind: RefKindName = "commit" if is_commit_oid(revision) else self._ref_kind(api, repo_id, revision)
        files = tuple(self._tree(f"{api}/tree/{commit}?recursive=true", repo_id, revision))
        return UpstreamRevision(commit=commit, kind=kind, private=bool(info.get("private")), files=files)

    def _ref_kind(self, api: str, repo_id: str, revision: str) -> RefKindName:
        refs = self._json(f"{api}/refs", repo_id, revision)
        tags = refs.get("tags", []) if isinstance(refs, dict) else []
        names = {t.get("name") for t in tags if isinstance(t, dict)} if isinstance(tags, list) else set()
        return "tag" if revision in names else "branch"

    def _tree(self, url: str, repo_id: str, revision: str) -> Iterator[UpstreamFile]:
        count = 0
        for _ in range(MAX_PAGES):
            response = self._get(url, repo_id, revision)
            items = _decode(response, url)
            if not isinstance(items, list):
                raise UpstreamError(detail=f"{url}: a tree listing is a JSON list")
            for item in items:
                if isinstance(item, dict) and item.get("type") == "file":
                    count += 1
                    if count > MAX_FILES:
                        raise UpstreamError(detail=f"{repo_id}@{revision} lists more than {MAX_FILES} files")
                    yield _tree_file(item)
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            if _origin(following) != self._origin:
                raise UpstreamError(detail=f"the tree's next page {following!r} is on another origin")
            url = following
        raise UpstreamError(detail=f"{repo_id}@{revision}: the tree listing has more than {MAX_PAGES} pages")

    # Downloads

    def download(self, repo_type: str, repo_id: str, commit: str, file: UpstreamFile) -> Iterator[bytes]:
        """The file's bytes, in order, resumed with `Range` after a break for up to `resume_seconds`
        without progress. The caller checks them against the file's hashes."""
        prefix = "/datasets" if repo_type == "dataset" else ""
        url = f"{self.endpoint}{prefix}/{repo_id}/resolve/{commit}/{quote(file.path)}"
        received, backoff, deadline = 0, FIRST_BACKOFF_SECONDS, None
        while True:
            try:
                for chunk in self._transfer(url, file, received):
                    received += len(chunk)
                    deadline, backoff = None, FIRST_BACKOFF_SECONDS
                    yield chunk
                return
            except (_Broken, httpx.TransportError) as exc:
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self._resume_seconds
                if now >= deadline:
                    raise UpstreamUnavailable(
                        detail=f"{file.path}: transfer broke at byte {received} of {file.size} ({exc})"
                    ) from None
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _transfer(self, url: str, file: UpstreamFile, start: int) -> Iterator[bytes]:
        headers = {"Range": f"bytes={start}-"} if start else {}
        with self._http.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status >= 500 or status == 429:
                raise _Broken(f"HTTP {status}")
            if status in (401, 403, 404):
                raise UpstreamError(detail=f"{file.path}: the upstream listed it but answers {status} for it")
            if status not in (200, 206):
                raise UpstreamError(detail=f"{file.path}: the upstream answered HTTP {status}")
            skip = 0
            if start and status == 206:
                _check_content_range(response.headers.get("content-range", ""), start, file)
            elif start:
                skip = start  # the range was ignored: the whole file again, drop what we hold
            offset = start
            # As they arrive (no re-chunking): a buffered chunk would be lost with a broken connection.
            for chunk in response.iter_bytes():
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                offset += len(chunk)
                if offset > file.size:
                    raise UpstreamMismatch(detail=f"{file.path}: more than the {file.size} bytes the upstream lists")
                yield chunk
            if offset < file.size:
                raise _Broken(f"the body ended at byte {offset}")

    # HTTP

    def _get(self, url: str, repo_id: str, revision: str) -> httpx.Response:
        try:
            response = self._http.get(url)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(detail=f"{self.endpoint}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(detail=f"{self.endpoint} answered HTTP {response.status_code}")
        if response.status_code in (401, 403, 404):
            raise _not_found(response, repo_id, revision)
        if response.status_code != 200:
            raise UpstreamError(detail=f"{url}: HTTP {response.status_code}")
        return response

    def _json(self, url: str, repo_id: str, revision: str) -> Any:
        return _decode(self._get(url, repo_id, revision), url)


def _not_found(response: httpx.Response, repo_id: str, revision: str) -> DeltahubError:
    """The Hub answers 401 (no token) or 404 for a repository the caller may not see; X-Error-Code
    tells a missing revision apart."""
    if response.headers.get("x-error-code") in ("RevisionNotFound", "EntryNotFound"):
        return RevisionNotFound(repo_id=repo_id, revision=revision)
    return RepoNotFound(repo_id=repo_id)


def _decode(response: httpx.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(detail=f"{url}: the upstream's answer is not JSON") from None


def _tree_file(item: dict[str, Any]) -> UpstreamFile:
    try:
        path, size, git_oid = item["path"], item["size"], item["oid"]
        if not (isinstance(path, str) and isinstance(git_oid, str) and isinstance(size, int)) or size < 0:
            raise TypeError
        check_path(path)
        lfs = item.get("lfs")
        sha256 = None
        if lfs is not None:
            sha256 = check_sha256(str(lfs["oid"]))
            if lfs.get("size", size) != size:
                raise TypeError
        return UpstreamFile(path=path, size=size, sha256=sha256, git_oid=git_oid)
    except (KeyError, TypeError, AttributeError, DeltahubError):
        raise UpstreamError(detail=f"the upstream lists an invalid file entry {str(item)[:200]!r}") from None


def _check_content_range(value: str, start: int, file: UpstreamFile) -> None:
    unit, _, spec = value.partition(" ")
    first = spec.split("-", 1)[0]
    if unit != "bytes" or not first.isdigit() or int(first) != start:
        raise UpstreamError(detail=f"{file.path}: asked for bytes from {start}, got Content-Range {value!r}")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc
