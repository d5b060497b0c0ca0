"""Request dependencies: the hub, the caller, the repository, revision and path of the route.

Routes declare what they need by type (``hub: HubDep``, ``caller: WriterDep``); everything here is read
from the app state that ``create_app`` fills, so tests and replicas build apps side by side.

Dependencies that only read the request or the app state, or decide from what they are given, are
``async def``: FastAPI runs a plain ``def`` dependency on the thread pool, and a download resolved a
dozen of them, ~1 ms of thread hops per request on 2 cores. Those that touch the catalog (the caller's
token, the repository) stay ``def``, off the event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import TokenInfo, TokenStore, identify, repo_type_of
from service.errors import Unauthorized
from service.mirror import pull_for_request
from service.options import ServiceOptions
from service.paths import param, repo_id_from
from service.policy import Policy, require_writer
from service.signing import UploadSigner
from service.streams import UploadGate
from storage.app.hub import HubApi
from storage.app.views import LocatedFile, ReadSource, RepoInfo


@dataclass
class TransferCounters:
    """What crossed the wire, so dedup before transfer and resumed downloads can be seen (and tested)."""

    lfs_objects_offered: int = 0
    lfs_objects_already_held: int = 0
    lfs_put_requests: int = 0
    lfs_put_bytes: int = 0
    inline_files: int = 0
    inline_bytes: int = 0
    download_requests: int = 0
    download_bytes: int = 0
    xet_xorbs_received: int = 0
    xet_xorbs_already_held: int = 0
    xet_xorb_bytes: int = 0
    xet_shards: int = 0
    xet_files_staged: int = 0
    xet_files_already_held: int = 0
    xet_dedup_queries: int = 0
    xet_dedup_hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: value for name, value in vars(self).items() if not name.startswith("_")}


@dataclass(frozen=True)
class ServiceState:
    hub: HubApi
    tokens: TokenStore
    options: ServiceOptions
    signer: UploadSigner
    counters: TransferCounters
    uploads: UploadGate
    policy: Policy = field(default_factory=Policy)


async def get_state(request: Request) -> ServiceState:
    return cast(ServiceState, request.app.state.deltahub)


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_hub(state: StateDep) -> HubApi:
    return state.hub


async def get_options(state: StateDep) -> ServiceOptions:
    return state.options


async def get_policy(state: StateDep) -> Policy:
    return state.policy


HubDep = Annotated[HubApi, Depends(get_hub)]
OptionsDep = Annotated[ServiceOptions, Depends(get_options)]
PolicyDep = Annotated[Policy, Depends(get_policy)]

# Declared for the OpenAPI schema; the header itself is parsed by `identify`, which also rejects
# other schemes instead of treating them as anonymous.
_bearer = HTTPBearer(auto_error=False, description="A deltahub access token (HF_TOKEN on the client).")


def get_caller(
    request: Request,
    state: StateDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenInfo | None:
    caller = identify(state.tokens, request.headers.get("authorization"))
    if caller is not None:
        request.state.caller = caller.name  # for the request log (service/metrics.py), never the token
    return caller


CallerDep = Annotated[TokenInfo | None, Depends(get_caller)]


async def get_writer(caller: CallerDep) -> TokenInfo:
    return require_writer(caller)


WriterDep = Annotated[TokenInfo, Depends(get_writer)]


async def get_repo_id(request: Request) -> str:
    return repo_id_from(request.path_params)


async def get_revision(request: Request) -> str:
    return param(request.path_params["revision"])


async def get_file_path(request: Request) -> str:
    return param(request.path_params.get("path", ""))


async def get_repo_type(request: Request) -> str:
    """"model" or "dataset", from the route's "/api/{models,datasets}/" or "/datasets/" prefix."""
    return repo_type_of(request.path_params.get("kind"))


RepoIdDep = Annotated[str, Depends(get_repo_id)]
RepoTypeDep = Annotated[str, Depends(get_repo_type)]
RevisionDep = Annotated[str, Depends(get_revision)]
FilePathDep = Annotated[str, Depends(get_file_path)]


async def get_base_url(request: Request, options: OptionsDep) -> str:
    """Where clients reach this service: URLs we hand out (commit, next page, upload) start with it."""
    if options.public_url:
        return options.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


BaseUrlDep = Annotated[str, Depends(get_base_url)]


def get_readable_repo(
    request: Request, hub: HubDep, policy: PolicyDep, caller: CallerDep, repo_id: RepoIdDep, repo_type: RepoTypeDep
) -> RepoInfo:
    """The route's repository if the caller may read it; RepoNotFound, exactly as for a repository that
    does not exist, otherwise. Runs before the route reads any body.

    On a mirror, the revision the route names is first fetched from the upstream if it is not held
    (service/mirror.py)."""
    pull_for_request(hub, request.scope, repo_id, repo_type, caller, policy)
    return policy.readable_repo(hub, repo_id, caller, repo_type=repo_type)


ReadableRepoDep = Annotated[RepoInfo, Depends(get_readable_repo)]


def get_readable_file(
    request: Request, hub: HubDep, policy: PolicyDep, caller: CallerDep, repo_id: RepoIdDep, repo_type: RepoTypeDep,
    revision: RevisionDep, path: FilePathDep,
) -> LocatedFile:
    """A download's repository, commit and file if the caller may read the repository (RepoNotFound
    otherwise, as `get_readable_repo`), found in one catalog session; mirrored first like it."""
    pull_for_request(hub, request.scope, repo_id, repo_type, caller, policy)
    return policy.readable_file(hub, repo_id, revision, path, caller, repo_type=repo_type)


ReadableFileDep = Annotated[LocatedFile, Depends(get_readable_file)]


def get_readable_object(
    request: Request, hub: HubDep, policy: PolicyDep, caller: CallerDep, repo_id: RepoIdDep, repo_type: RepoTypeDep,
    oid: str,
) -> ReadSource | None:
    """A git-lfs download's file (None when no commit of the repository names it) if the caller may read
    the repository (RepoNotFound otherwise, as `get_readable_repo`), found in one catalog session;
    mirrored first like it."""
    pull_for_request(hub, request.scope, repo_id, repo_type, caller, policy)
    return policy.readable_object(hub, repo_id, oid, caller, repo_type=repo_type)


ReadableObjectDep = Annotated[ReadSource | None, Depends(get_readable_object)]


@dataclass(frozen=True, slots=True)
class WritableRepo:
    repo: RepoInfo
    writer: TokenInfo


def get_writable_repo(
    hub: HubDep, policy: PolicyDep, caller: CallerDep, repo_id: RepoIdDep, repo_type: RepoTypeDep
) -> WritableRepo:
    """The route's repository and its writer: 401 without a token, 403 for a read-only token (both before
    the repository is looked up), RepoNotFound when the caller may not read it, 403 when they may read
    but not write it. Runs before the route reads any body."""
    writer = require_writer(caller)
    return WritableRepo(policy.writable_repo(hub, repo_id, writer, repo_type=repo_type), writer)


WritableRepoDep = Annotated[WritableRepo, Depends(get_writable_repo)]


async def get_authenticated(caller: CallerDep) -> TokenInfo:
    if caller is None:
        raise Unauthorized(detail="this needs a token (Authorization: Bearer <token>)")
    return caller


AuthenticatedDep = Annotated[TokenInfo, Depends(get_authenticated)]


async def get_hub_admin(caller: CallerDep, policy: PolicyDep) -> TokenInfo:
    return policy.require_hub_admin(caller)


HubAdminDep = Annotated[TokenInfo, Depends(get_hub_admin)]


async def get_hub_reader(caller: CallerDep, policy: PolicyDep) -> TokenInfo | None:
    """The caller of a route that lists or sums what the caller may read: refused when anonymous on a
    hub closed to anonymous reading."""
    policy.let_in(caller)
    return caller


HubReaderDep = Annotated[TokenInfo | None, Depends(get_hub_reader)]
