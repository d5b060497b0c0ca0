"""The Xet upload protocol: token routes on the Hub API, and the CAS routes the client uploads to.

Current ``huggingface_hub`` clients upload every LFS-sized file this way without asking first: a
``xet-write-token`` request, then xorbs and a shard to the CAS URL the answer names. The CAS is this
service, under a path naming the repository, so a token for one repository is refused on another's.
Files the shard lists are staged like LFS uploads before the shard is acknowledged; the client's
commit that follows names them by SHA-256, as it would after LFS. Downloads stay on ``/resolve``: its
answers carry no Xet headers, so the client downloads over plain HTTP.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.auth import bearer_token
from service.deps import BaseUrlDep, ReadableRepoDep, RepoIdDep, RepoTypeDep, RevisionDep, StateDep, WritableRepoDep
from service.errors import NotSupported, PayloadTooLarge
from service.limits import streams_body
from service.policy import Rule, policy
from service.xet_tokens import CasGrant, CasTokenSigner, Scope
from storage.app.xet_uploads import MAX_SHARD_BYTES, MAX_XORB_BYTES, XetUploads
from storage.core.errors import InvalidInput, NotFound
from storage.core.names import split_repo_id
from storage.core.xet.shard import parse_shard

router = APIRouter(tags=["xet"])

# The repository's type is in the path ("models", "datasets"): the token is checked against type and id.
CAS = "/api/v1/xet/{kind:repotype}/{namespace}/{name}"
# Telemetry the client reports after a transfer: read (bounded) and dropped.
MAX_TELEMETRY_BYTES = 1 << 20


# Xorbs checked at once: each holds its body and its decompressed chunks (up to ~130 MiB) until it is
# stored, so four bound the CAS to about half a GiB however many connections the client opens; the
# check is CPU-bound, and four keep two cores busy while bodies arrive.
XORB_SLOTS = 4
# Shards rebuilt at once: each holds its body (the client's are far below the 64 MiB limit) and reads
# and writes its files one chunk at a time; more in parallel would only share the same disk.
SHARD_SLOTS = 4


@dataclass(frozen=True)
class XetService:
    uploads: XetUploads
    tokens: CasTokenSigner
    xorb_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(XORB_SLOTS))
    shard_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SHARD_SLOTS))


def get_xet(request: Request) -> XetService:
    return cast(XetService, request.app.state.deltahub_xet)


XetDep = Annotated[XetService, Depends(get_xet)]


def _uploads(xet: XetService) -> XetUploads:
    return xet.uploads


def _token_answer(
    xet: XetService, base_url: str, repo_type: str, repo_id: str, revision: str, scope: Scope
) -> JSONResponse:
    token, expires = xet.tokens.issue(repo_type, repo_id, revision, scope, time.time())
    cas_url = f"{base_url}/api/v1/xet/{repo_type}s/{repo_id}"
    # hf_xet reads the JSON body; huggingface_hub's own helper reads the headers: both carry the same.
    headers = {
        "X-Xet-Cas-Url": cas_url,
        "X-Xet-Access-Token": token,
        "X-Xet-Token-Expiration": str(expires),
        "Cache-Control": "no-store",
    }
    return JSONResponse({"accessToken": token, "exp": expires, "casUrl": cas_url}, headers=headers)


# The CAS token is scoped to the repository's type, id and revision: a model's token is refused on the
# CAS of a dataset of the same name.
@router.get("/api/{kind:repotype}/{namespace}/{name}/xet-write-token/{revision}", summary="A CAS token for Xet uploads")
@policy(Rule.REPO_WRITE)
def write_token(
    state: StateDep,
    xet: XetDep,
    writable: WritableRepoDep,
    base_url: BaseUrlDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    create_pr: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    if create_pr:
        raise NotSupported(detail="pull requests (create_pr); commit to a branch instead")
    _uploads(xet)
    # No sizes yet: a full namespace gets no upload token (the shard is checked with its files' sizes).
    state.hub.quotas.check(split_repo_id(writable.repo.repo_id)[0], 1)
    return _token_answer(xet, base_url, repo_type, repo_id, revision, "write")


@router.get("/api/{kind:repotype}/{namespace}/{name}/xet-read-token/{revision}", summary="A CAS token for Xet reads")
@policy(Rule.REPO_READ)
def read_token(
    state: StateDep,
    xet: XetDep,
    _readable: ReadableRepoDep,
    base_url: BaseUrlDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
) -> JSONResponse:
    state.hub.resolve(repo_id, revision, repo_type=repo_type)
    return _token_answer(xet, base_url, repo_type, repo_id, revision, "read")


def _grant(request: Request, xet: XetService, repo_type: str, repo_id: str, scope: Scope) -> CasGrant:
    token = bearer_token(request.headers.get("authorization"))
    return xet.tokens.check(token, repo_type, repo_id, scope, time.time())


async def _body(request: Request, limit: int, what: str) -> bytearray:
    """The whole body, refused once it passes `limit` (and before reading when it says it will)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(detail=f"a {what} is at most {limit} bytes; this one says {declared}")
    body = bytearray()
    async for piece in request.stream():
        if len(body) + len(piece) > limit:
            raise PayloadTooLarge(detail=f"a {what} is at most {limit} bytes")
        body += piece
    return body  # not copied into bytes: a xorb may be 64 MiB


@router.post(CAS + "/v1/xorbs/{prefix}/{xorb_hash}", summary="Upload a xorb (Xet CAS)")
@streams_body
@policy(Rule.CAS_TOKEN)
async def upload_xorb(
    request: Request, state: StateDep, xet: XetDep, repo_id: RepoIdDep, repo_type: RepoTypeDep, prefix: str,
    xorb_hash: str,
) -> dict[str, Any]:
    _grant(request, xet, repo_type, repo_id, "write")
    uploads = _uploads(xet)
    if prefix != "default":
        raise InvalidInput(detail=f"xorbs are uploaded under the prefix 'default', not {prefix!r}")
    # Waiting requests are not read: the client's sends stall instead of the server's memory growing.
    async with xet.xorb_slots:
        body = await _body(request, MAX_XORB_BYTES, "xorb")
        inserted = await run_in_threadpool(uploads.put_xorb, xorb_hash, body)
    state.counters.add(
        xet_xorbs_received=1, xet_xorb_bytes=len(body), xet_xorbs_already_held=0 if inserted else 1
    )
    return {"was_inserted": inserted}


@router.post(CAS + "/v1/shards", summary="Upload a shard: its files are checked and staged (Xet CAS)")
@streams_body
@policy(Rule.CAS_TOKEN)
async def upload_shard(
    request: Request, state: StateDep, xet: XetDep, repo_id: RepoIdDep, repo_type: RepoTypeDep
) -> dict[str, Any]:
    _grant(request, xet, repo_type, repo_id, "write")
    uploads = _uploads(xet)
    async with xet.shard_slots:
        body = await _body(request, MAX_SHARD_BYTES, "shard")
        await run_in_threadpool(_check_quota, state, repo_id, body)
        staged = await run_in_threadpool(uploads.register_shard, body)
        # Each file was rebuilt from chunks whose verification hashes the client proved it has, and its
        # SHA-256 checked: the repository's writers may commit it (service/policy.py, may_name_file).
        await run_in_threadpool(
            lambda: state.hub.grant_uploads(repo_id, [f.sha256 for f in staged], repo_type=repo_type)
        )
    written = sum(1 for f in staged if f.written)
    state.counters.add(xet_shards=1, xet_files_staged=written, xet_files_already_held=len(staged) - written)
    # 1: registered. The client reads success from the status alone.
    return {"result": 1}


def _check_quota(state: StateDep, repo_id: str, body: bytearray) -> None:
    """Before the shard's files are rebuilt into staging: the namespace's quota with their sizes."""
    namespace, name = split_repo_id(repo_id)
    files = {(f.sha256 or f.file_hash).hex(): f.size for f in parse_shard(bytes(body)).files}
    state.hub.quotas.check(namespace, files, repo=name)


@router.get(CAS + "/v1/chunks/{prefix}/{chunk_hash}", summary="Global dedup: a shard naming a held chunk")
@policy(Rule.CAS_TOKEN)
def dedup_query(
    request: Request, state: StateDep, xet: XetDep, repo_id: RepoIdDep, repo_type: RepoTypeDep, prefix: str,
    chunk_hash: str,
) -> Response:
    _grant(request, xet, repo_type, repo_id, "read")
    uploads = _uploads(xet)
    # The spec names 'default-merkledb'; hf_xet 1.8 asks under its default prefix, 'default'.
    if prefix not in ("default-merkledb", "default"):
        raise InvalidInput(detail=f"the dedup prefix is 'default-merkledb', not {prefix!r}")
    answer = uploads.dedup_answer(chunk_hash)
    state.counters.add(xet_dedup_queries=1, xet_dedup_hits=0 if answer is None else 1)
    if answer is None:
        raise NotFound(detail=f"chunk {chunk_hash} is not held")
    return Response(answer, media_type="application/octet-stream")


@router.post("/v1/telemetry", include_in_schema=False)
@streams_body
@policy(Rule.PUBLIC)
async def telemetry(request: Request) -> Response:
    # hf_xet 1.8 reports each transfer's figures to the CAS host's root, best effort and never retried.
    # Nothing is kept; the answer only spares the client a 404.
    await _body(request, MAX_TELEMETRY_BYTES, "telemetry report")
    return Response(status_code=204)
