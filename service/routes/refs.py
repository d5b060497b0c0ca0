"""Branches and tags: create_branch, delete_branch, create_tag, delete_tag (list_repo_refs is in hf.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict

from service.deps import HubDep, RepoIdDep, RepoTypeDep, RevisionDep, WritableRepoDep
from service.paths import param
from service.policy import Rule, policy

router = APIRouter(tags=["huggingface-compatible"])

REPO = "/api/{kind:repotype}/{namespace}/{name}"


class NewBranch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    startingPoint: str | None = None


class NewTag(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tag: str
    message: str | None = None


@router.post(REPO + "/branch/{branch}", summary="Create a branch (create_branch); 409 if the name is taken")
@policy(Rule.REPO_WRITE)
def create_branch(
    hub: HubDep,
    _writable: WritableRepoDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    branch: str,
    body: Annotated[NewBranch | None, Body()] = None,
) -> dict[str, Any]:
    start = body.startingPoint if body else None
    hub.create_branch(repo_id, param(branch), revision=start, repo_type=repo_type)
    return {}


@router.delete(REPO + "/branch/{branch}", summary="Delete a branch (delete_branch)")
@policy(Rule.REPO_WRITE)
def delete_branch(
    hub: HubDep, _writable: WritableRepoDep, repo_id: RepoIdDep, repo_type: RepoTypeDep, branch: str
) -> dict[str, Any]:
    hub.delete_branch(repo_id, param(branch), repo_type=repo_type)
    return {}


@router.post(REPO + "/tag/{revision}", summary="Tag a revision (create_tag); 409 if the name is taken")
@policy(Rule.REPO_WRITE)
def create_tag(
    hub: HubDep,
    _writable: WritableRepoDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    body: Annotated[NewTag, Body()],
) -> dict[str, Any]:
    hub.create_tag(repo_id, body.tag, revision=revision, message=body.message, repo_type=repo_type)
    return {}


@router.delete(REPO + "/tag/{tag}", summary="Delete a tag (delete_tag)")
@policy(Rule.REPO_WRITE)
def delete_tag(
    hub: HubDep, _writable: WritableRepoDep, repo_id: RepoIdDep, repo_type: RepoTypeDep, tag: str
) -> dict[str, Any]:
    hub.delete_tag(repo_id, param(tag), repo_type=repo_type)
    return {}
