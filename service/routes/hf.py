"""Repository reads the Hugging Face client makes: model and dataset info, tree listings, paths info,
refs, commits. Every route serves both "/api/models/..." and "/api/datasets/..."."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service import hf_json
from service.deps import FilePathDep, HubDep, OptionsDep, ReadableRepoDep, RepoIdDep, RepoTypeDep, RevisionDep
from service.errors import PayloadTooLarge
from service.limits import streams_body
from service.policy import Rule, policy
from service.tree import list_tree, page_after
from storage.app.hub import HubApi
from storage.app.views import CommitInfo, RepoInfo
from storage.core.errors import EntryNotFound, InvalidInput, RevisionNotFound

router = APIRouter(tags=["huggingface-compatible"])

REPO = "/api/{kind:repotype}/{namespace}/{name}"
DEFAULT_BRANCH = "main"
MAX_PATHS_INFO_BYTES = 4 * 1024 * 1024


def self_link(request: Request, options: OptionsDep, **query: Any) -> str:
    """This URL with a new query (the client follows ``Link: <...>; rel="next"`` as given).

    The path is the raw one, so an encoded revision or directory stays encoded in the next request.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode()
    origin = (options.public_url or f"{request.url.scheme}://{request.url.netloc}").rstrip("/")
    return f"{origin}{raw.decode('latin-1')}?{urlencode(query)}"


def _model_info(hub: HubApi, repo: RepoInfo, revision: str | None, blobs: bool) -> dict[str, Any]:
    repo_id, kind = repo.repo_id, repo.repo_type
    commit: CommitInfo | None
    if revision is None:
        try:
            commit = hub.resolve(repo_id, DEFAULT_BRANCH, repo_type=kind)
        except RevisionNotFound:
            commit = None  # a repository whose main branch was deleted
    else:
        commit = hub.resolve(repo_id, revision, repo_type=kind)
    entries = hub.list_tree(repo_id, commit.oid, repo_type=kind) if commit else []
    return hf_json.model_info(repo, commit, entries, blobs=blobs)


@router.get(REPO, summary="Repository info at the default branch (model_info, dataset_info, repo_info)")
@policy(Rule.REPO_READ)
def model_info(hub: HubDep, repo: ReadableRepoDep, blobs: Annotated[bool, Query()] = False) -> dict[str, Any]:
    return _model_info(hub, repo, None, blobs)


@router.get(REPO + "/revision/{revision}", summary="Repository info at a revision (snapshot_download)")
@policy(Rule.REPO_READ)
def model_info_at(
    hub: HubDep,
    repo: ReadableRepoDep,
    revision: RevisionDep,
    blobs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    return _model_info(hub, repo, revision, blobs)


@router.get(REPO + "/tree/{revision}", summary="List the root of a tree (list_repo_tree, list_repo_files)")
@router.get(REPO + "/tree/{revision}/{path:path}", summary="List a directory of a tree")
@policy(Rule.REPO_READ)
def tree(
    request: Request,
    response: Response,
    hub: HubDep,
    _readable: ReadableRepoDep,
    options: OptionsDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    path: FilePathDep,
    recursive: Annotated[bool, Query()] = False,
    expand: Annotated[bool, Query()] = False,
    cursor: Annotated[str | None, Query(description="Path after which the page starts")] = None,
) -> list[dict[str, Any]]:
    commit = hub.resolve(repo_id, revision, repo_type=repo_type)
    entries = hub.list_tree(repo_id, commit.oid, repo_type=repo_type)
    items = list_tree(entries, path, recursive=recursive)
    if items is None:
        raise EntryNotFound(path=path, revision=revision, repo_id=repo_id)
    page, next_cursor = page_after(items, cursor, options.tree_page_size)
    if next_cursor is not None:
        link = self_link(request, options, recursive=recursive, expand=expand, cursor=next_cursor)
        response.headers["Link"] = f'<{link}>; rel="next"'
    if expand:
        _add_last_commits(hub, repo_id, repo_type, commit.oid, page, [e.path for e in entries])
    return page


def _add_last_commits(
    hub: HubApi, repo_id: str, repo_type: str, oid: str, page: list[dict[str, Any]], all_paths: list[str]
) -> None:
    """`lastCommit` of each item: a file's own; a directory's is the newest among the files under it."""
    wanted: dict[str, list[str]] = {}
    for item in page:
        if item["type"] == "file":
            wanted[item["path"]] = [item["path"]]
        else:
            folder = item["path"].rstrip("/") + "/"
            wanted[item["path"]] = [p for p in all_paths if p.startswith(folder)]
    changes = hub.last_changes(repo_id, oid, sorted({p for paths in wanted.values() for p in paths}),
                               repo_type=repo_type)
    for item in page:
        found = [changes[p] for p in wanted[item["path"]] if p in changes]
        if found:
            item["lastCommit"] = hf_json.last_commit(max(found, key=lambda c: c.created_at))


@router.post(REPO + "/paths-info/{revision}", summary="Describe some paths of a tree (get_paths_info)")
@streams_body
@policy(Rule.REPO_READ)
async def paths_info(
    request: Request,
    hub: HubDep,
    _readable: ReadableRepoDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
) -> list[dict[str, Any]]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PATHS_INFO_BYTES:
            raise PayloadTooLarge(detail=f"paths-info accepts at most {MAX_PATHS_INFO_BYTES} bytes")
    wanted = _form_paths(request.headers.get("content-type", ""), bytes(body))
    return await run_in_threadpool(_describe_paths, hub, repo_id, repo_type, revision, wanted)


def _form_paths(content_type: str, body: bytes) -> list[str]:
    if "json" in content_type:
        try:
            paths = json.loads(body).get("paths", [])
        except (ValueError, AttributeError) as exc:
            raise InvalidInput(detail="paths-info body is not a JSON object") from exc
    else:
        paths = parse_qs(body.decode("utf-8", "replace")).get("paths", [])
    return [paths] if isinstance(paths, str) else [str(p) for p in paths]


def _describe_paths(
    hub: HubApi, repo_id: str, repo_type: str, revision: str, wanted: list[str]
) -> list[dict[str, Any]]:
    commit = hub.resolve(repo_id, revision, repo_type=repo_type)
    everything = list_tree(hub.list_tree(repo_id, commit.oid, repo_type=repo_type), "", recursive=True) or []
    by_path = {item["path"]: item for item in everything}
    return [by_path[p.strip("/")] for p in dict.fromkeys(wanted) if p.strip("/") in by_path]


@router.get(REPO + "/refs", summary="Branches and tags of a repository (list_repo_refs)")
@policy(Rule.REPO_READ)
def refs(
    hub: HubDep,
    _readable: ReadableRepoDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    include_prs: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    found = hub.list_refs(repo_id, repo_type=repo_type)
    out: dict[str, list[dict[str, Any]]] = {
        "branches": [hf_json.ref_item(r) for r in found if r.kind == "branch"],
        "converts": [],
        "tags": [hf_json.ref_item(r) for r in found if r.kind == "tag"],
    }
    if include_prs:
        out["pullRequests"] = []
    return out


@router.get(REPO + "/commits/{revision}", summary="History of a revision, newest first (list_repo_commits)")
@policy(Rule.REPO_READ)
def commits(
    request: Request,
    response: Response,
    hub: HubDep,
    _readable: ReadableRepoDep,
    options: OptionsDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    p: Annotated[int, Query(ge=0, description="Page number")] = 0,
) -> list[dict[str, Any]]:
    history = hub.list_commits(repo_id, revision, repo_type=repo_type)
    size = options.commits_page_size
    if (p + 1) * size < len(history):
        response.headers["Link"] = f'<{self_link(request, options, p=p + 1)}>; rel="next"'
    return [hf_json.commit_item(c) for c in history[p * size : (p + 1) * size]]
