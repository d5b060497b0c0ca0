"""Discovery: list_models, list_datasets (`hf models ls`, `hf datasets ls`) and the caller's own
repositories with their storage (list_user_repos, `hf repos ls`).

Only repositories the caller may read are listed (service/policy.py decides, in the query itself so
pages stay full). Pages are cut here and followed by the client through the ``Link`` header.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service import hf_json
from service.deps import AuthenticatedDep, HubDep, HubReaderDep, OptionsDep, PolicyDep, RepoTypeDep
from service.policy import Rule, policy
from service.routes.hf import self_link
from storage.app.repositories import RepoQuery
from storage.app.views import RepoListing

router = APIRouter(tags=["huggingface-compatible"])


def _listing(
    request: Request,
    response: Response,
    hub: HubDep,
    options: OptionsDep,
    query: RepoQuery,
    limit: int | None,
    cursor: int,
) -> list[RepoListing]:
    size = min(limit or options.listing_page_size, options.listing_page_size)
    page = hub.search_repos(query, offset=cursor, limit=size)
    if len(page) == size:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        response.headers["Link"] = f'<{self_link(request, options, **params, cursor=cursor + size)}>; rel="next"'
    return page


Search = Annotated[str | None, Query(description="Part of the repository id, any case")]
Author = Annotated[str | None, Query(description="The namespace")]
Sort = Annotated[str | None, Query(description="lastModified, createdAt or id; others order by id")]
Direction = Annotated[int | None, Query(description="-1 (default) newest first, 1 oldest first")]
Limit = Annotated[int | None, Query(ge=1)]
Cursor = Annotated[int, Query(ge=0, description="Offset of the page (from the Link header)")]


@router.get("/api/{kind:storedtype}", summary="List models or datasets (list_models, list_datasets, hf models ls)")
@policy(Rule.HUB_READ)
def list_repos(
    request: Request,
    response: Response,
    hub: HubDep,
    policy: PolicyDep,
    caller: HubReaderDep,
    options: OptionsDep,
    repo_type: RepoTypeDep,
    search: Search = None,
    author: Author = None,
    sort: Sort = None,
    direction: Direction = None,
    limit: Limit = None,
    full: Annotated[bool, Query()] = False,
    cursor: Cursor = 0,
) -> list[dict[str, Any]]:
    visible = policy.private_visibility(caller)
    query = RepoQuery(
        repo_type=repo_type, search=search, author=author, sort=sort, descending=direction != 1,
        include_private=visible.everything, private_namespaces=visible.namespaces, private_repos=visible.repos,
    )
    page = _listing(request, response, hub, options, query, limit, cursor)
    items = [hf_json.listing_item(item) for item in page]
    if full:
        for item, found in zip(items, page, strict=True):
            entries = hub.list_tree(found.repo.repo_id, found.head.oid, repo_type=repo_type) if found.head else []
            item["siblings"] = [hf_json.sibling(e, blobs=False) for e in entries]
    return items


@router.get("/api/settings/repositories", summary="The caller's repositories and their storage (hf repos ls)")
@router.get("/api/organizations/{namespace}/settings/repositories", summary="A namespace's repositories")
@policy(Rule.AUTHENTICATED)
def repositories(
    request: Request,
    response: Response,
    hub: HubDep,
    policy: PolicyDep,
    caller: AuthenticatedDep,
    options: OptionsDep,
    namespace: str | None = None,
    cursor: Cursor = 0,
) -> list[dict[str, Any]]:
    owner = namespace or caller.name
    visible = policy.private_visibility(caller)
    out: list[dict[str, Any]] = []
    for repo_type in ("model", "dataset"):
        query = RepoQuery(repo_type=repo_type, author=owner, sort="id", descending=False,
                          include_private=visible.everything, private_namespaces=visible.namespaces,
                          private_repos=visible.repos, with_sizes=True)
        offset = 0
        while True:
            page = hub.search_repos(query, offset=offset, limit=options.listing_page_size)
            out.extend(hf_json.storage_item(item) for item in page)
            if len(page) < options.listing_page_size:
                break
            offset += len(page)
    total = sum(item["storage"] for item in out) or 1
    for item in out:
        item["storagePercent"] = 100.0 * item["storage"] / total
    return out
