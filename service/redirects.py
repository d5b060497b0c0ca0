"""The Hub's answer for a repository's old name after ``move_repo``: a redirect to its new name.

On the Hub a renamed repository keeps answering under its old name: any request whose path names the
old id gets ``307 Temporary Redirect`` with a relative ``Location`` naming the new id, the rest of the
path and the query unchanged. ``huggingface_hub`` follows it everywhere: its HTTP client follows
redirects for the API, and its ``HEAD /resolve`` follows those that stay on the same host (the
relative ones), so ``model_info``, ``hf_hub_download`` and ``snapshot_download`` of the old id reach
the moved repository. 307 keeps the method and the body, so a commit or an LFS batch sent to the old
name lands there too.

Only a request that would otherwise answer RepositoryNotFound is redirected: a repository created
under the old name takes it back. A private repository is redirected only for callers who may read it,
so the redirect tells nobody else that it exists or where it went.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from service.auth import identify, repo_type_of
from service.deps import ServiceState
from service.errors import error_response
from service.paths import repo_id_from
from storage.core.errors import DeltahubError, RepoNotFound


def moved_location(request: Request, new_id: str) -> str | None:
    """The request's own path and query with the repository segments naming `new_id` (None when the
    route does not name a repository by "{namespace}/{name}")."""
    route = request.scope.get("route")
    if not isinstance(route, Route):
        return None
    template = route.path.split("/")
    at = next((i for i, segment in enumerate(template) if segment == "{namespace}"), None)
    if at is None or at + 1 >= len(template) or not template[at + 1].startswith("{name}"):
        return None
    raw = request.scope.get("raw_path") or request.scope["path"].encode("latin-1")
    segments = raw.split(b"?", 1)[0].decode("latin-1").split("/")
    if len(segments) <= at + 1:
        return None
    namespace, name = new_id.split("/", 1)
    segments[at] = namespace
    segments[at + 1] = name + template[at + 1][len("{name}"):]  # keeps ".git" of the LFS routes
    query = request.scope.get("query_string", b"").decode("latin-1")
    return "/".join(segments) + (f"?{query}" if query else "")


def _moved_target(request: Request) -> str | None:
    params = request.path_params
    if "namespace" not in params or "name" not in params:
        return None
    state: ServiceState = request.app.state.deltahub
    try:
        repo_type = repo_type_of(params.get("kind"))
        caller = identify(state.tokens, request.headers.get("authorization"))
    except DeltahubError:
        return None
    moved = state.hub.moved_to(repo_id_from(params), repo_type=repo_type)
    if moved is None or not state.policy.may_read(caller, moved.repo_id, private=moved.private):
        return None
    return moved_location(request, moved.repo_id)


def moved_in_sight(state: ServiceState, repo_id: str, repo_type: str) -> bool:
    """Whether `repo_id` is the old name of a repository anonymous callers may read: its RepoNotFound is
    answered with a redirect, not with the credentials challenge of git routes (service/routes/git.py)."""
    moved = state.hub.moved_to(repo_id, repo_type=repo_type)
    return moved is not None and state.policy.may_read(None, moved.repo_id, private=moved.private)


def install_redirects(app: FastAPI) -> None:
    @app.exception_handler(RepoNotFound)
    async def repo_not_found(request: Request, err: RepoNotFound) -> Response:
        location = await run_in_threadpool(_moved_target, request)
        if location is None:
            return error_response(err)
        return JSONResponse(
            {"error": f"repository moved to {location}"}, status_code=307, headers={"Location": location}
        )
