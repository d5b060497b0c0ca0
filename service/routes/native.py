"""deltahub's own API under /api/v1: health, repositories, commits, files and their ingest state, stats."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from service.deps import AuthenticatedDep, HubDep, HubReaderDep, PolicyDep, ReadableRepoDep, StateDep
from service.policy import Rule, policy
from storage.core.errors import FileNotStored

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["deltahub"])

# A SHA-256 no upload can have: looking it up touches the catalog and nothing else.


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    catalog: bool = Field(description="The SQL catalog answered a query")
    store: bool = Field(description="The object store answered a request")


class Repo(BaseModel):
    # Filled from the hub's records (storage/app/views.py) by attribute: no mapper to keep in step.
    model_config = ConfigDict(from_attributes=True)

    repo_id: str
    namespace: str
    name: str
    private: bool
    created_at: datetime


class RepoDetail(Repo):
    branches: dict[str, str] = Field(description="Branch name → head commit id")


class Commit(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    oid: str
    parent_oid: str | None
    message: str
    author: str | None
    created_at: datetime


class File(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sha256: str
    size: int
    kind: str = Field(description="the file format that parsed it: safetensors, torchzip, blob (opaque), ...")
    state: Literal["staged", "stored", "failed"] = Field(
        description="staged: served from the upload as sent; stored: ingested in reduced form; failed: see error"
    )
    error: str | None
    ingest: Literal["queued", "running", "done", "failed"] | None = Field(
        default=None,
        description="the latest ingest job: done when the file and any rebase of its relatives are finished",
    )


class Stats(BaseModel):
    storage: dict[str, Any] = Field(description="Logical vs physical bytes and where the savings came from")
    transfers: dict[str, int] = Field(description="Traffic seen by this API process since it started")


@router.get(
    "/health",
    response_model=Health,
    summary="Whether this process can serve requests",
    responses={503: {"model": Health, "description": "The catalog or the store is unreachable"}},
)
@policy(Rule.PUBLIC)
def health(hub: HubDep) -> JSONResponse:
    answers = hub.health()
    catalog, store = answers["catalog"], answers["store"]
    report = Health(status="ok" if catalog and store else "unavailable", catalog=catalog, store=store)
    return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)


@router.get("/repos", response_model=list[Repo], summary="Repositories the caller can see")
@policy(Rule.HUB_READ)
def list_repos(hub: HubDep, policy: PolicyDep, caller: HubReaderDep) -> list[Repo]:
    return [Repo.model_validate(r) for r in hub.list_repos() if policy.may_read(caller, r.repo_id, private=r.private)]


@router.get("/repos/{namespace}/{name}", response_model=RepoDetail, summary="One repository and its branches")
@policy(Rule.REPO_READ)
def get_repo(hub: HubDep, repo: ReadableRepoDep) -> RepoDetail:
    return RepoDetail(**Repo.model_validate(repo).model_dump(), branches=hub.list_branches(repo.repo_id))


@router.get("/repos/{namespace}/{name}/commits", response_model=list[Commit], summary="History, newest first")
@policy(Rule.REPO_READ)
def list_commits(
    hub: HubDep, repo: ReadableRepoDep, revision: Annotated[str, Query()] = "main"
) -> list[Commit]:
    return [Commit.model_validate(c) for c in hub.list_commits(repo.repo_id, revision)]


@router.get("/files/{sha256}", response_model=File, summary="A held file and its ingest state (needs a token)")
@policy(Rule.AUTHENTICATED)
def file_info(hub: HubDep, policy: PolicyDep, caller: AuthenticatedDep, sha256: str) -> File:
    """Hub administrators, and callers who may read a repository naming the file or write one it was
    uploaded for; everyone else gets the 404 of a hash never uploaded (docs/security.md, "Reads and
    commits by hash")."""
    if not policy.may_name_file(hub, caller, sha256):
        raise FileNotStored(sha256=sha256)
    return File.model_validate(hub.file_info(sha256))


@router.get("/stats", response_model=Stats, summary="Storage accounting and transfer counters")
@policy(Rule.HUB_READ)
def stats(state: StateDep, policy: PolicyDep, caller: HubReaderDep) -> Stats:
    """Hub administrators see everything; everyone else the hub's totals, the repositories they may
    read, and families without their members' hashes or fingerprints."""
    storage = dict(state.hub.stats())
    if caller is None or not caller.hub_admin:
        readable = {r.repo_id for r in state.hub.list_repos() if policy.may_read(caller, r.repo_id, private=r.private)}
        storage = visible_stats(storage, readable)
    return Stats(storage=storage, transfers=state.counters.snapshot())


def visible_stats(storage: dict[str, Any], readable: set[str]) -> dict[str, Any]:
    """The storage report cut to the repositories in `readable`; families keep only their sizes."""
    out = dict(storage)
    out["repositories"] = [r for r in storage.get("repositories", []) if r.get("repo_id") in readable]
    out["families"] = [
        {k: v for k, v in fam.items() if k in ("id", "logical_bytes", "physical_bytes")}
        | {"members": len(fam.get("members", []))}
        for fam in storage.get("families", [])
    ]
    return out
