"""git over smart HTTP: ``git clone``, ``git fetch`` and ``git push`` of ``http://host/{ns}/{name}``
(``/datasets/{ns}/{name}`` for datasets, with or without ``.git``).

Thin: who the caller is and what they may do, the body read within its bound, then one call to the
hub's git service (storage/app/git_http.py). git sends credentials only after a challenge, so an
anonymous caller who may not read (or write) the repository gets 401 with ``WWW-Authenticate: Basic``,
the same answer whether the repository is private or missing; a token that may not read it gets the
RepoNotFound of a missing repository, as on every route.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service.auth import TokenInfo, identify
from service.deps import RepoIdDep, RepoTypeDep, ServiceState, StateDep
from service.errors import PayloadTooLarge, Unauthorized, error_response
from service.limits import streams_body
from service.policy import Rule, policy
from service.redirects import moved_in_sight
from storage.app.git_http import RECEIVE_PACK, SERVICES, UPLOAD_PACK
from storage.app.git_push import PushTarget
from storage.core.errors import DeltahubError, GitPackTooLarge, InvalidInput, RepoNotFound

router = APIRouter(tags=["git"])

PREFIXES = ("/{namespace}/{name}.git", "/{kind:repoprefix}/{namespace}/{name}.git",
            "/{namespace}/{name}", "/{kind:repoprefix}/{namespace}/{name}")
CHALLENGE = {"WWW-Authenticate": 'Basic realm="deltahub", charset="UTF-8"'}
NO_CACHE = {"Cache-Control": "no-cache, max-age=0, must-revalidate", "Expires": "Fri, 01 Jan 1980 00:00:00 GMT"}
MAX_REQUEST_BYTES = 16 << 20  # an upload-pack request is wants and haves: 100 bytes a commit


class _Challenge(Exception):
    def __init__(self, err: DeltahubError) -> None:
        self.err = err


def _caller(state: ServiceState, request: Request, *, write: bool, repo_id: str, repo_type: str) -> TokenInfo | None:
    """The caller if they may read (or write) the repository; _Challenge for an anonymous one who may not."""
    try:
        caller = identify(state.tokens, request.headers.get("authorization"))
    except Unauthorized as err:
        raise _Challenge(err) from err
    if caller is not None:
        request.state.caller = caller.name
    try:
        if write:
            state.policy.writable_repo(state.hub, repo_id, caller, repo_type=repo_type)
        else:
            state.policy.readable_repo(state.hub, repo_id, caller, repo_type=repo_type)
    except (Unauthorized, RepoNotFound) as err:
        if caller is None and not moved_in_sight(state, repo_id, repo_type):
            challenge = Unauthorized(detail="git needs a token: user name anything, the token as password")
            raise _Challenge(challenge) from err
        raise  # RepoNotFound of a moved repository: service/redirects.py answers 307 to its new name
    return caller



async def _body(request: Request, limit: int, too_large: Callable[[], DeltahubError]) -> bytes:
    """The request body, gunzipped when git compressed it, refused past `limit` bytes either way."""
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large()
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflate.decompress(body, limit + 1)
        except zlib.error as err:
            raise InvalidInput(detail=f"gzip body: {err}") from err
        if len(body) > limit or inflate.unconsumed_tail:
            raise too_large()
    return body


def _service_response(service: str, kind: str, content: bytes) -> Response:
    return Response(content, media_type=f"application/x-{service}-{kind}", headers=NO_CACHE)


@policy(Rule.GIT_READ)
async def info_refs(
    request: Request, state: StateDep, repo_id: RepoIdDep, repo_type: RepoTypeDep,
    service: Annotated[str, Query()] = "",
) -> Response:
    if service not in SERVICES:
        return error_response(InvalidInput(detail="deltahub speaks git's smart HTTP protocol only "
                                                  "(info/refs?service=git-upload-pack); update git"))
    try:
        await run_in_threadpool(_caller, state, request, write=service == RECEIVE_PACK, repo_id=repo_id,
                                repo_type=repo_type)
    except _Challenge as challenge:
        return error_response(challenge.err, CHALLENGE)
    content = await run_in_threadpool(state.hub.git.advertise, repo_id, repo_type, service)
    return _service_response(service, "advertisement", content)


@streams_body
@policy(Rule.GIT_READ)
async def upload_pack(request: Request, state: StateDep, repo_id: RepoIdDep, repo_type: RepoTypeDep) -> Response:
    try:
        await run_in_threadpool(_caller, state, request, write=False, repo_id=repo_id, repo_type=repo_type)
    except _Challenge as challenge:
        return error_response(challenge.err, CHALLENGE)
    body = await _body(request, MAX_REQUEST_BYTES, lambda: PayloadTooLarge(
        detail=f"a git-upload-pack request of more than {MAX_REQUEST_BYTES:,} bytes"))
    content = await run_in_threadpool(state.hub.git.upload_pack, repo_id, repo_type, body)
    return _service_response(UPLOAD_PACK, "result", content)


@streams_body
@policy(Rule.REPO_WRITE)
async def receive_pack(request: Request, state: StateDep, repo_id: RepoIdDep, repo_type: RepoTypeDep) -> Response:
    try:
        caller = await run_in_threadpool(_caller, state, request, write=True, repo_id=repo_id, repo_type=repo_type)
    except _Challenge as challenge:
        return error_response(challenge.err, CHALLENGE)
    assert caller is not None  # writable_repo refuses anonymous callers
    limit = state.options.git_max_pack_bytes
    body = await _body(request, limit, lambda: GitPackTooLarge(limit=limit))
    target = PushTarget(repo_id, repo_type, caller.name,
                        lambda sha256s: state.policy.nameable_files(state.hub, caller, sha256s))
    content = await run_in_threadpool(
        partial(state.hub.git.receive_pack, max_unpacked=state.options.git_max_unpacked_bytes), target, body
    )
    return _service_response(RECEIVE_PACK, "result", content)


for prefix in PREFIXES:
    typed = "{kind" in prefix
    router.add_api_route(prefix + "/info/refs", info_refs, methods=["GET"], include_in_schema=not typed,
                         summary="git: refs and capabilities of a repository (smart HTTP)")
    router.add_api_route(prefix + "/git-upload-pack", upload_pack, methods=["POST"], include_in_schema=not typed,
                         summary="git: a pack of what a clone or fetch wants")
    router.add_api_route(prefix + "/git-receive-pack", receive_pack, methods=["POST"],
                         include_in_schema=not typed, summary="git: a pushed pack and its ref updates")
