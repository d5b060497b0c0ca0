"""Repository administration and account routes of the Hugging Face client."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from service.auth import TokenInfo, repo_type_of
from service.deps import AuthenticatedDep, BaseUrlDep, HubDep, PolicyDep, WritableRepoDep, WriterDep
from service.errors import NotSupported, error_response
from service.policy import Rule, policy
from storage.core.errors import RepoExists

router = APIRouter(tags=["huggingface-compatible"])



class RepoRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    organization: str | None = None
    type: str | None = "model"


class CreateRepo(RepoRef):
    visibility: Literal["public", "private", "protected"] | None = None
    private: bool | None = None


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    visibility: Literal["public", "private", "protected"] | None = None
    private: bool | None = None
    gated: Literal["auto", "manual", False] | None = None


class MoveRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fromRepo: str
    toRepo: str
    type: str | None = "model"


def _url(base_url: str, repo_type: str, repo_id: str) -> str:
    return f"{base_url}/datasets/{repo_id}" if repo_type == "dataset" else f"{base_url}/{repo_id}"


def _repo_id(ref: RepoRef, caller_name: str) -> str:
    # The Hub puts a repository created without an organization in the caller's own namespace.
    return f"{ref.organization or caller_name}/{ref.name}"


@router.post("/api/repos/create", summary="Create a repository (create_repo); 409 if it exists", response_model=None)
@policy(Rule.NAMESPACE_WRITE)
def create_repo(
    hub: HubDep, policy: PolicyDep, writer: WriterDep, base_url: BaseUrlDep, body: Annotated[CreateRepo, Body()]
) -> dict[str, Any] | JSONResponse:
    kind = repo_type_of(body.type)
    private = body.visibility in ("private", "protected") if body.visibility else bool(body.private)
    repo_id = _repo_id(body, writer.name)
    # Before the name is looked up: only those who may write the namespace learn that a name is taken.
    policy.require_namespace_writer(writer, repo_id)
    try:
        repo = hub.create_repo(repo_id, private=private, repo_type=kind, author=writer.name)
    except RepoExists as err:
        # create_repo(exist_ok=True) accepts the 409 and then reads the URL from this very body.
        return error_response(err, body={"url": _url(base_url, kind, repo_id)})
    return {"url": _url(base_url, kind, repo.repo_id), "name": repo.repo_id, "id": str(repo.id)}


@router.delete("/api/repos/delete", summary="Delete a repository (delete_repo)")
@policy(Rule.NAMESPACE_WRITE)
def delete_repo(hub: HubDep, policy: PolicyDep, writer: WriterDep, body: Annotated[RepoRef, Body()]) -> dict[str, Any]:
    kind = repo_type_of(body.type)
    repo = policy.writable_repo(hub, _repo_id(body, writer.name), writer, repo_type=kind, deleting=True)
    hub.delete_repo(repo.repo_id, repo_type=kind)
    return {}


@router.post("/api/repos/move", summary="Rename a repository (move_repo); the old name then redirects to it")
@policy(Rule.NAMESPACE_WRITE)
def move_repo(hub: HubDep, policy: PolicyDep, writer: WriterDep, body: Annotated[MoveRepo, Body()]) -> dict[str, Any]:
    kind = repo_type_of(body.type)
    # Out of a namespace the caller writes, into one they write: a move never takes another's name.
    repo = policy.writable_repo(hub, body.fromRepo, writer, repo_type=kind)
    policy.require_namespace_writer(writer, body.toRepo)
    # Requests naming the old id are redirected to the new one (service/redirects.py).
    hub.move_repo(repo.repo_id, body.toRepo, repo_type=kind)
    return {}


@router.put("/api/{kind:repotype}/{namespace}/{name}/settings", summary="Change visibility (update_repo_settings)")
@policy(Rule.REPO_WRITE)
def repo_settings(hub: HubDep, target: WritableRepoDep, body: Annotated[RepoSettings, Body()]) -> dict[str, Any]:
    if body.gated:
        raise NotSupported(detail="gated repositories")
    private = body.visibility in ("private", "protected") if body.visibility else body.private
    repo = target.repo
    if private is not None:
        repo = hub.set_private(repo.repo_id, private, repo_type=repo.repo_type)
    return {"private": repo.private, "visibility": "private" if repo.private else "public"}


@router.get("/api/whoami-v2", summary="The caller's identity (whoami)")
@policy(Rule.AUTHENTICATED)
def whoami(caller: AuthenticatedDep) -> dict[str, Any]:
    """The Hub's shape: the user, its organizations with the caller's role in each, and the token."""
    return {
        "type": "user",
        "id": caller.name,
        "name": caller.name,
        "fullname": caller.name,
        "email": None,
        "emailVerified": False,
        "canPay": False,
        "isPro": False,
        "periodEnd": None,
        "avatarUrl": "",
        "orgs": [
            {"type": "org", "id": org, "name": org, "fullname": org, "email": None, "canPay": False,
             "avatarUrl": "", "roleInOrg": role, "isEnterprise": False}
            for org, role in caller.orgs
        ],
        "auth": {"type": "access_token", "accessToken": _access_token(caller)},
    }


def _access_token(caller: TokenInfo) -> dict[str, Any]:
    display = caller.token_name or caller.name
    if caller.scopes is None:
        return {"displayName": display, "role": "write" if caller.can_write else "read"}
    kinds = {org for org, _ in caller.orgs}
    scoped = []
    for scope in caller.scopes:
        permissions = ["repo.content.read", "repo.write"] if scope.can_write else ["repo.content.read"]
        if scope.name is None:
            kind = "org" if scope.namespace in kinds else "user"
            entity = {"type": kind, "name": scope.namespace, "_id": scope.namespace}
        else:
            repo_id = f"{scope.namespace}/{scope.name}"
            entity = {"type": "model", "name": repo_id, "_id": repo_id}
        scoped.append({"entity": entity, "permissions": permissions})
    return {
        "displayName": display,
        "role": "fineGrained",
        "fineGrained": {"canReadGatedRepos": False, "global": [], "scoped": scoped},
    }


@router.post("/api/validate-yaml", summary="Model card metadata check (called before README.md uploads)")
@policy(Rule.PUBLIC)
async def validate_yaml() -> dict[str, Any]:
    # Model cards are stored as they are; their metadata is read, as a hint, only at ingest.
    return {"errors": [], "warnings": []}
