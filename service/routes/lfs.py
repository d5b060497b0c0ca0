"""Git LFS: the batch API (uploads: dedup before transfer, signed PUTs, verify; downloads: the
reconstructed file, ranges supported).

The batch answer omits ``actions`` for every object the hub already holds and the caller may name
(service/policy.py, may_name_file: a repository they may read names it, or it was uploaded for one they
may write), so the client sends nothing for it: re-uploading a known model costs one request. Anyone
else is asked for the bytes, as for an object the hub does not hold: the PUT checks them against the
oid (the hub keeps its one copy) and records the upload for the repository its URL was signed for.
Objects that must travel get a signed URL on this service; the PUT body is streamed into the hub, never
held whole. Multipart transfer is never offered, so every object arrives as one streamed PUT.

A download is answered for objects some commit of the repository names (never for content another
repository holds), with an href on this service under the same read rule as /resolve; the caller's
own Authorization header travels with it, so git-lfs presents the same credentials.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from service.deps import (
    BaseUrlDep,
    CallerDep,
    HubDep,
    PolicyDep,
    ReadableObjectDep,
    RepoIdDep,
    RepoTypeDep,
    StateDep,
    WriterDep,
)
from service.errors import NotSupported, RangeNotSatisfiable, Unauthorized, error_response
from service.limits import streams_body
from service.policy import Rule, policy
from service.ranges import parse_range
from service.redirects import moved_in_sight
from service.streams import upload_body
from storage.core.errors import FileNotStored, RepoNotFound, UploadMismatch
from storage.core.faults import crash_point
from storage.core.names import is_sha256, split_repo_id

router = APIRouter(tags=["git-lfs"])

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


class LfsObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    oid: str
    size: int


class LfsBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    operation: Literal["upload", "download"]
    transfers: list[str] = ["basic"]
    objects: list[LfsObject] = Field(max_length=10_000)
    hash_algo: str = "sha256"


class Verify(BaseModel):
    oid: str
    size: int


def _object_error(obj: LfsObject, max_bytes: int) -> str | None:
    if not is_sha256(obj.oid):
        return f"oid {obj.oid!r} is not a lowercase hex SHA-256"
    if not 0 <= obj.size <= max_bytes:
        return f"size {obj.size} is outside 0..{max_bytes} bytes"
    return None


@router.post("/{kind:repoprefix}/{namespace}/{name}.git/info/lfs/objects/batch", include_in_schema=False)
@router.post("/{namespace}/{name}.git/info/lfs/objects/batch", summary="LFS batch: where to upload or download what")
@policy(Rule.LFS_BATCH)
def batch(
    request: Request,
    state: StateDep,
    caller: CallerDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    base_url: BaseUrlDep,
    body: Annotated[LfsBatch, Body()],
) -> JSONResponse:
    if body.hash_algo != "sha256":
        raise NotSupported(detail=f"hash algorithm {body.hash_algo!r}")
    if body.operation == "download":
        return _download(request, state, caller, repo_id, repo_type, base_url, body)
    repo = state.policy.writable_repo(state.hub, repo_id, caller, repo_type=repo_type)
    namespace, name = split_repo_id(repo.repo_id)
    signed_for = f"{repo.repo_type}:{repo.repo_id}"  # signed: the PUT grants this repository
    offered = {o.oid: o.size for o in body.objects if _object_error(o, state.options.max_upload_bytes) is None}
    state.hub.quotas.check(namespace, offered, repo=name)  # before any upload URL is handed out
    # git-lfs sends a verify without credentials unless the action carries them: the caller's own header.
    verify_action: dict[str, Any] = {"href": f"{base_url}/api/v1/lfs/verify"}
    if (auth := request.headers.get("authorization")) is not None:
        verify_action["header"] = {"Authorization": auth}
    # Held for this caller: a file they may name that the hub holds (claimed, as `has_file` claims it).
    held = state.hub.claim_held(state.policy.nameable_files(state.hub, caller, list(offered)))
    answers = []
    for obj in body.objects:
        problem = _object_error(obj, state.options.max_upload_bytes)
        if problem is not None:
            answers.append({"oid": obj.oid, "size": obj.size, "error": {"code": 422, "message": problem}})
        elif obj.oid in held:
            answers.append({"oid": obj.oid, "size": obj.size})
        else:
            expires, signature = state.signer.sign(obj.oid, obj.size, time.time(), repo=signed_for)
            query = f"size={obj.size}&expires={expires}&repo={quote(signed_for, safe='')}&signature={signature}"
            answers.append(
                {
                    "oid": obj.oid,
                    "size": obj.size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{base_url}/api/v1/lfs/objects/{obj.oid}?{query}"},
                        "verify": verify_action,
                    },
                }
            )
    already = sum(1 for a in answers if "actions" not in a and "error" not in a)
    state.counters.add(lfs_objects_offered=len(body.objects), lfs_objects_already_held=already)
    return JSONResponse({"transfer": "basic", "objects": answers, "hash_algo": "sha256"}, media_type=LFS_MEDIA_TYPE)


@router.put("/api/v1/lfs/objects/{oid}", summary="Upload one LFS object to a signed URL (streamed)")
@streams_body
@policy(Rule.SIGNED_URL)
async def put_object(
    request: Request,
    state: StateDep,
    oid: str,
    size: Annotated[int, Query(ge=0)],
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query()],
    repo: Annotated[str, Query(max_length=256)] = "",
) -> dict[str, Any]:
    state.signer.check(oid, size, expires, signature, time.time(), repo=repo)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != size:
        raise UploadMismatch(detail=f"Content-Length {declared} differs from the {size} bytes signed for")
    info, received = await upload_body(
        request.stream(), state.hub, sha256=oid, size=size, limit=state.options.max_upload_bytes,
        gate=state.uploads, client=request.client.host if request.client else "?",
    )
    if repo:  # the bytes were checked against the oid: the repository's writers may now commit it
        repo_type, repo_id = repo.split(":", 1)
        await run_in_threadpool(state.hub.grant_uploads, repo_id, [info.sha256], repo_type=repo_type)
    state.counters.add(lfs_put_requests=1, lfs_put_bytes=received)
    crash_point("api.lfs_put_received")
    return {"oid": info.sha256, "size": info.size}


@router.post("/api/v1/lfs/verify", summary="Confirm an LFS object arrived whole")
@policy(Rule.WRITE_TOKEN)
def verify(hub: HubDep, policy: PolicyDep, writer: WriterDep, body: Annotated[Verify, Body()]) -> dict[str, Any]:
    # Only for a file the caller may name (they just uploaded it): to others it is a file never uploaded.
    if not policy.may_name_file(hub, writer, body.oid) or not hub.has_file(body.oid):
        raise FileNotStored(sha256=body.oid)
    info = hub.file_info(body.oid)
    if info.size != body.size:
        raise UploadMismatch(detail=f"{body.oid} has {info.size} bytes, not {body.size}")
    return {"oid": info.sha256, "size": info.size}


def _download(
    request: Request, state: StateDep, caller: CallerDep, repo_id: str, repo_type: str, base_url: str,
    body: LfsBatch,
) -> JSONResponse:
    """Where git-lfs downloads each object; an anonymous caller who may not read the repository is
    challenged (git-lfs then asks git for credentials), the same whether it is private or missing."""
    try:
        repo, sizes = state.policy.readable_objects(
            state.hub, repo_id, [o.oid for o in body.objects], caller, repo_type=repo_type
        )
    except (RepoNotFound, Unauthorized) as err:
        if caller is None and not moved_in_sight(state, repo_id, repo_type):
            challenge = Unauthorized(detail="git-lfs needs a token: user name anything, the token as password")
            return error_response(challenge, {"LFS-Authenticate": 'Basic realm="deltahub"'})
        raise err
    prefix = "/datasets" if repo.repo_type == "dataset" else ""
    auth = request.headers.get("authorization")
    answers = []
    for obj in body.objects:
        problem = _object_error(obj, state.options.max_upload_bytes)
        size = None if problem else sizes.get(obj.oid)
        if problem is not None:
            answers.append({"oid": obj.oid, "size": obj.size, "error": {"code": 422, "message": problem}})
            continue
        if size is None:
            missing = f"{obj.oid} is not a file of {repo.repo_id}"
            answers.append({"oid": obj.oid, "size": obj.size, "error": {"code": 404, "message": missing}})
            continue
        action: dict[str, Any] = {"href": f"{base_url}{prefix}/{repo.repo_id}.git/info/lfs/objects/{obj.oid}"}
        if auth is not None:
            action["header"] = {"Authorization": auth}
        answers.append({"oid": obj.oid, "size": size, "actions": {"download": action}})
    return JSONResponse({"transfer": "basic", "objects": answers, "hash_algo": "sha256"}, media_type=LFS_MEDIA_TYPE)


@router.get("/{kind:repoprefix}/{namespace}/{name}.git/info/lfs/objects/{oid}", include_in_schema=False)
@router.get("/{namespace}/{name}.git/info/lfs/objects/{oid}", summary="LFS download: one object, ranges supported")
@policy(Rule.REPO_READ)
def download_object(request: Request, state: StateDep, source: ReadableObjectDep, oid: str) -> Response:
    # One catalog session found the repository (and took the access decision on it) and the file; with
    # the file's read plan cached, the body needs no other (as /resolve).
    if source is None:
        return error_response(FileNotStored(sha256=oid))
    size = source.size
    headers = {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable as err:
        return error_response(err, {**headers, "Content-Range": f"bytes */{size}"})
    status, start, end = 200, 0, size
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = wanted.content_range(size)
    headers["Content-Length"] = str(end - start)
    state.counters.add(download_requests=1, download_bytes=end - start)
    # As /resolve: from the file's hot copy when it has one (its whole downloads count towards one).
    return StreamingResponse(state.hub.read_from(source, start, end), status_code=status, headers=headers,
                             media_type="application/octet-stream")
