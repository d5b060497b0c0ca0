"""Uploads through commits: which transfer each file takes (preupload), then the commit itself."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from service.auth import TokenInfo
from service.commit_payload import CommitHeader, Deletion, InlineFile, LfsFile, Operation, parse_line
from service.deps import BaseUrlDep, HubDep, OptionsDep, RepoIdDep, RepoTypeDep, RevisionDep, StateDep, WritableRepoDep
from service.errors import NotSupported
from service.hf_json import git_blob_sha1
from service.limits import streams_body
from service.policy import Rule, policy
from service.streams import ndjson_lines
from storage.app.hub import HubApi
from storage.app.views import FileAddition, FileInfo
from storage.core.errors import FileNotStored, InvalidInput, RevisionNotFound, UploadMismatch
from storage.core.faults import crash_point
from storage.core.names import split_repo_id

router = APIRouter(tags=["huggingface-compatible"])

REPO = "/api/{kind:repotype}/{namespace}/{name}"
COMMIT_ID_LENGTH = 40


class PreuploadFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    path: str
    size: int = Field(ge=0)
    sample: str = ""


class Preupload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    files: list[PreuploadFile] = Field(max_length=10_000)


def _no_pull_requests(create_pr: bool) -> None:
    if create_pr:
        raise NotSupported(detail="pull requests (create_pr); commit to a branch instead")


def _branch_files(hub: HubApi, repo_id: str, repo_type: str, revision: str) -> dict[str, FileInfo]:
    """The files of the branch committed to; RevisionNotFound for a branch that does not exist, as the
    Hub answers (branches are made by create_branch), except "main" of a repository with no ref at all."""
    try:
        head = hub.resolve(repo_id, revision, repo_type=repo_type)
    except RevisionNotFound:
        if revision == "main" and not hub.list_refs(repo_id, repo_type=repo_type):
            return {}
        raise
    return {entry.path: entry.file for entry in hub.list_tree(repo_id, head.oid, repo_type=repo_type)}


@router.post(REPO + "/preupload/{revision}", summary="Choose inline or LFS transfer per file (uploads)")
@policy(Rule.REPO_WRITE)
def preupload(
    hub: HubDep,
    _writable: WritableRepoDep,
    options: OptionsDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    body: Annotated[Preupload, Body()],
    create_pr: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    _no_pull_requests(create_pr)
    remote = _branch_files(hub, repo_id, repo_type, revision)
    # Before any byte travels: what the namespace would hold with every new or changed file.
    changed = sum(f.size for f in body.files if (held := remote.get(f.path)) is None or held.size != f.size)
    hub.quotas.check(split_repo_id(repo_id)[0], changed)
    answers = []
    # A damaged file (verify found it) gets no oid: the client sends it again, and that repairs it.
    damaged = hub.unheld({remote[f.path].sha256 for f in body.files if f.path in remote})
    for file in body.files:
        mode = "regular" if file.size <= options.regular_file_max_bytes else "lfs"
        held, oid = remote.get(file.path), None
        # The oid lets the client drop unchanged files from the commit; it compares a SHA-256 for LFS
        # files and a git blob id for inline ones (computed here only for files small enough to inline).
        if held is not None and held.size == file.size and held.sha256 not in damaged:
            oid = held.sha256 if mode == "lfs" else git_blob_sha1(b"".join(hub.read(held.sha256)))
        answers.append({"path": file.path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    return {"files": answers}


@router.post(REPO + "/commit/{revision}", summary="Create a commit from an ndjson payload (create_commit)")
@streams_body
@policy(Rule.REPO_WRITE)
async def commit(
    request: Request,
    state: StateDep,
    writable: WritableRepoDep,
    base_url: BaseUrlDep,
    repo_id: RepoIdDep,
    repo_type: RepoTypeDep,
    revision: RevisionDep,
    create_pr: Annotated[bool, Query()] = False,
    base_model: Annotated[str | None, Header(alias="X-Deltahub-Base-Model")] = None,
) -> dict[str, Any]:
    """`X-Deltahub-Base-Model` names the model this upload derives from (`deltahub push --base`): a hint
    that ingest measures like any other candidate."""
    _no_pull_requests(create_pr)
    if base_model is not None:
        split_repo_id(base_model)
    if len(revision) == COMMIT_ID_LENGTH and all(c in "0123456789abcdef" for c in revision):
        raise InvalidInput(detail=f"commits are made on a branch, not on commit {revision}")
    hub, options = state.hub, state.options
    writer = writable.writer  # the repository was checked (404 / 403) before any of the body was read

    header: CommitHeader | None = None
    additions: list[FileAddition] = []
    deletions: list[str] = []
    by_hash: list[LfsFile] = []
    number = 0
    lines = ndjson_lines(request.stream(), max_line=options.max_commit_line_bytes, max_total=options.max_commit_bytes)
    async for line in lines:
        number += 1
        item = parse_line(number, line)
        if isinstance(item, CommitHeader):
            header = item
        else:
            await _apply(state, item, additions, deletions, by_hash)
    if header is None:
        raise InvalidInput(detail="empty commit payload: line 1 must be the header")

    namespace, name = split_repo_id(repo_id)
    sizes = await _check_named(state, writer, by_hash, additions)
    await run_in_threadpool(hub.quotas.check, namespace, sizes, repo=name)
    crash_point("api.commit_parsed")
    created = await run_in_threadpool(
        lambda: hub.commit(
            repo_id,
            revision,
            message=header.message,
            additions=additions,
            deletions=deletions,
            parent_oid=header.parent_oid,
            author=writer.name,
            declared_base=base_model,
            repo_type=repo_type,
        )
    )
    crash_point("api.commit_done")
    prefix = "datasets/" if repo_type == "dataset" else ""
    return {
        "success": True,
        "commitUrl": f"{base_url}/{prefix}{repo_id}/commit/{created.oid}",
        "commitOid": created.oid,
        "pullRequestUrl": None,
    }


async def _apply(
    state: StateDep, op: Operation, additions: list[FileAddition], deletions: list[str], by_hash: list[LfsFile]
) -> None:
    if isinstance(op, Deletion):
        deletions.append(op.path)
    elif isinstance(op, InlineFile):
        info = await run_in_threadpool(lambda: state.hub.upload([op.content], expected_size=len(op.content)))
        state.counters.add(inline_files=1, inline_bytes=len(op.content))
        additions.append(FileAddition(op.path, info.sha256, lfs=False))
    elif isinstance(op, LfsFile):
        by_hash.append(op)  # checked with the others once the payload is read (`_check_named`)
        additions.append(FileAddition(op.path, op.sha256, lfs=True))


async def _check_named(
    state: StateDep, writer: TokenInfo, by_hash: list[LfsFile], additions: list[FileAddition]
) -> dict[str, int]:
    """The size of every added file, after checking the files named by hash, in payload order, in two
    catalog sessions whatever their number.

    A hash is not possession: a file the caller may not name (no repository they may read names it, it
    was not uploaded for one they may write) is refused as a file never uploaded, before its size is
    compared, so the answer says nothing about whether the hub holds it."""
    nameable = await run_in_threadpool(state.policy.nameable_files, state.hub, writer, [op.sha256 for op in by_hash])
    sizes = await run_in_threadpool(state.hub.file_sizes, [a.sha256 for a in additions])
    for op in by_hash:
        if op.sha256 not in nameable or op.sha256 not in sizes:
            raise FileNotStored(sha256=op.sha256)
        if op.size is not None and sizes[op.sha256] != op.size:
            raise UploadMismatch(detail=f"{op.path!r}: {op.sha256} has {sizes[op.sha256]} bytes, not {op.size}")
    return sizes
