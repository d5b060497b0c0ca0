"""Downloads: ``HEAD``/``GET /{namespace}/{name}/resolve/{revision}/{path}``.

``hf_hub_download`` first sends HEAD and keeps ``X-Repo-Commit``, the ETag (the file's SHA-256, which
names the blob in its cache) and the size; then GET, with a ``Range`` when it resumes. Bodies are
streamed from the hub a piece at a time, whatever the file size.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from service.deps import FilePathDep, ReadableFileDep, RepoIdDep, StateDep
from service.errors import RangeNotSatisfiable, error_response
from service.policy import Rule, policy
from service.ranges import parse_range
from service.streams import hot_body
from storage.core.errors import EntryNotFound

router = APIRouter(tags=["huggingface-compatible"])


RESOLVE = "/{namespace}/{name}/resolve/{revision}/{path:path}"
# Datasets: "/datasets/{namespace}/{name}/resolve/..."; four segments before "resolve", so never a model's.
RESOLVE_TYPED = "/{kind:repoprefix}" + RESOLVE
# Bodies of hot copies up to this size are read whole before the answer starts (a 1 MiB range).
SMALL_BODY = 1 << 20


@router.get(
    RESOLVE_TYPED, summary="Download a dataset's file (as below)", response_class=Response
)
@router.get(
    RESOLVE, summary="Download a file (whole or one byte range); HEAD gives its metadata", response_class=Response
)
@policy(Rule.REPO_READ)
def resolve_file(
    request: Request, state: StateDep, located: ReadableFileDep, repo_id: RepoIdDep, path: FilePathDep
) -> Response:
    # One catalog session found the repository (and took the access decision on it), the commit and the
    # file; with the file's read plan cached, the body needs no other.
    commit, entry = located.commit, located.entry
    if entry is None or located.source is None:
        # The client caches "absent at this commit" under the commit id it finds here.
        err = EntryNotFound(repo_id=repo_id, revision=commit.oid, path=path)
        return error_response(err, {"X-Repo-Commit": commit.oid})
    file, source = entry.file, located.source

    etag = f'"{file.sha256}"'
    headers = {
        "X-Repo-Commit": commit.oid,
        "ETag": etag,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(file.size),
        "Accept-Ranges": "bytes",
    }
    if_range = request.headers.get("if-range")
    try:
        wanted = parse_range(request.headers.get("range"), file.size)
    except RangeNotSatisfiable as err:
        return error_response(err, {**headers, "Content-Range": f"bytes */{file.size}"})
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's partial copy is of another version: send it all

    status, start, end = 200, 0, file.size
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = wanted.content_range(file.size)
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    state.counters.add(download_requests=1, download_bytes=end - start)
    # A hot file's verified copy is sent as it lies on disk; any other is rebuilt from its frames.
    copy = state.hub.hot_copy(source)
    if copy is not None and end - start <= SMALL_BODY:
        # Read here, in the route's thread, and sent in one message: a streamed body costs two more
        # thread hops (~0.5 ms of a ~3 ms request). Only from a verified copy: a rebuilt body streams, so
        # a damaged frame cuts it where the damage is (docs/reliability.md), as for any size.
        return Response(b"".join(copy.chunks(start, end)), status_code=status, headers=headers,
                        media_type="application/octet-stream")
    body = hot_body(copy, start, end) if copy is not None else state.hub.read_from(source, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


# HEAD shares the handler; one documented operation is enough.
router.add_api_route(RESOLVE_TYPED, resolve_file, methods=["HEAD"], include_in_schema=False)
router.add_api_route(RESOLVE, resolve_file, methods=["HEAD"], include_in_schema=False)
