"""Git LFS uploads: the batch API (dedup before transfer), signed PUTs, verify.

The batch answer omits ``actions`` for every object the hub already holds and the caller may name
(service/policy.py, may_name_file: a repository they may read names it, or it was uploaded for one they
may write), so the client sends nothing for it: re-uploading a known model costs one request. Anyone
else is asked for the bytes, as for an object the hub does not hold: the PUT checks them against the
oid (the hub keeps its one copy) and records the upload for the repository its URL was signed for.
Objects that must travel get a signed URL on this service; the PUT body is streamed into the hub, never
held whole. Multipart transfer is never offered, so every object arrives as one streamed PUT.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from service.deps import BaseUrlDep, HubDep, PolicyDep, StateDep, WritableRepoDep, WriterDep
from service.errors import NotSupported
from service.limits import streams_body
from service.policy import Rule, policy
from service.streams import upload_body
from storage.core.errors import FileNotStored, UploadMismatch
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
@router.post("/{namespace}/{name}.git/info/lfs/objects/batch", summary="LFS batch: where to upload what")
@policy(Rule.REPO_WRITE)
def batch(
    state: StateDep,
    writable: WritableRepoDep,
    base_url: BaseUrlDep,
    body: Annotated[LfsBatch, Body()],
) -> JSONResponse:
    if body.operation != "upload":
        raise NotSupported(detail="LFS downloads through the batch API; use /resolve/")
    if body.hash_algo != "sha256":
        raise NotSupported(detail=f"hash algorithm {body.hash_algo!r}")
    namespace, name = split_repo_id(writable.repo.repo_id)
    repo = f"{writable.repo.repo_type}:{writable.repo.repo_id}"  # signed: the PUT grants this repository
    offered = {o.oid: o.size for o in body.objects if _object_error(o, state.options.max_upload_bytes) is None}
    state.hub.quotas.check(namespace, offered, repo=name)  # before any upload URL is handed out
    answers = []
    for obj in body.objects:
        problem = _object_error(obj, state.options.max_upload_bytes)
        if problem is not None:
            answers.append({"oid": obj.oid, "size": obj.size, "error": {"code": 422, "message": problem}})
        elif state.policy.may_name_file(state.hub, writable.writer, obj.oid) and state.hub.has_file(obj.oid):
            answers.append({"oid": obj.oid, "size": obj.size})
        else:
            expires, signature = state.signer.sign(obj.oid, obj.size, time.time(), repo=repo)
            query = f"size={obj.size}&expires={expires}&repo={quote(repo, safe='')}&signature={signature}"
            answers.append(
                {
                    "oid": obj.oid,
                    "size": obj.size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{base_url}/api/v1/lfs/objects/{obj.oid}?{query}"},
                        "verify": {"href": f"{base_url}/api/v1/lfs/verify"},
                    },
                }
            )
    held = sum(1 for a in answers if "actions" not in a and "error" not in a)
    state.counters.add(lfs_objects_offered=len(body.objects), lfs_objects_already_held=held)
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
