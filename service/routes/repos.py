"""Repository administration and account routes of the Hugging Face client."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from service.auth import repo_type_of
from service.deps import BaseUrlDep, CallerDep, HubDep, RepoIdDep, RepoTypeDep, WriterDep
from service.errors import NotSupported, Unauthorized, error_response
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
def create_repo(
    hub: HubDep, writer: WriterDep, base_url: BaseUrlDep, body: Annotated[CreateRepo, Body()]
) -> dict[str, Any] | JSONResponse:
    kind = repo_type_of(body.type)
    private = body.visibility in ("private", "protected") if body.visibility else bool(body.private)
    repo_id = _repo_id(body, writer.name)
    try:
        repo = hub.create_repo(repo_id, private=private, repo_type=kind, author=writer.name)
    except RepoExists as err:
        # create_repo(exist_ok=True) accepts the 409 and then reads the URL from this very body.
        return error_response(err, body={"url": _url(base_url, kind, repo_id)})
    return {"url": _url(base_url, kind, repo.repo_id), "name": repo.repo_id, "id": str(repo.id)}


@router.delete("/api/repos/delete", summary="Delete a repository (delete_repo)")
def delete_repo(hub: HubDep, writer: WriterDep, body: Annotated[RepoRef, Body()]) -> dict[str, Any]:
    hub.delete_repo(_repo_id(body, writer.name), repo_type=repo_type_of(body.type))
    return {}


@router.post("/api/repos/move", summary="Rename a repository (move_repo); the old name then redirects to it")
def move_repo(hub: HubDep, writer: WriterDep, body: Annotated[MoveRepo, Body()]) -> dict[str, Any]:
    # Requests naming the old id are redirected to the new one (service/redirects.py).
    hub.move_repo(body.fromRepo, body.toRepo, repo_type=repo_type_of(body.type))
    return {}


@router.put("/api/{kind:repotype}/{namespace}/{name}/settings", summary="Change visibility (update_repo_settings)")
def repo_settings(
    hub: HubDep, writer: WriterDep, repo_id: RepoIdDep, repo_type: RepoTypeDep, body: Annotated[RepoSettings, Body()]
) -> dict[str, Any]:
    if body.gated:
        raise NotSupported(detail="gated repositories")
    private = body.visibility in ("private", "protected") if body.visibility else body.private
    if private is not None:
        hub.set_private(repo_id, private, repo_type=repo_type)
    repo = hub.get_repo(repo_id, repo_type=repo_type)
    return {"private": repo.private, "visibility": "private" if repo.private else "public"}


@router.get("/api/whoami-v2", summary="The caller's identity (whoami)")
def whoami(caller: CallerDep) -> dict[str, Any]:
    """The Hub's shape: a user with no organisations (a later issue adds them), the token's role."""
    if caller is None:
        raise Unauthorized(detail="whoami needs a token")
    role = "write" if caller.can_write else "read"
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
        "orgs": [],
        "auth": {"type": "access_token", "accessToken": {"displayName": caller.name, "role": role}},
    }


@router.post("/api/validate-yaml", summary="Model card metadata check (called before README.md uploads)")
async def validate_yaml() -> dict[str, Any]:
    # Model cards are stored as they are; their metadata is read, as a hint, only at ingest.
    return {"errors": [], "warnings": []}
