"""The client side of push and pull: the Hugging Face client pointed at a deltahub server, and its errors.

The real `huggingface_hub` client does the transfers, so what the CLI exercises is exactly what users'
own scripts do. Xet is switched off (deltahub speaks the LFS protocol), as is the client's own progress
output (the CLI draws its own). No token is sent unless one is given: a stored Hugging Face token must
never leak to another server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import click
import httpx

from service.cli.common import DEFAULT_ENDPOINT, AccessDenied, ServerFailed, ServerUnreachable, err_console
from storage.core.errors import (
    Conflict,
    DeltahubError,
    EntryNotFound,
    InvalidInput,
    InvalidRepoName,
    NotFound,
    RepoNotFound,
    RevisionNotFound,
)
from storage.core.names import split_repo_id

if TYPE_CHECKING:
    from huggingface_hub import HfApi

F = TypeVar("F", bound=Callable[..., Any])

# Ingest state is polled this often; a poll is one indexed catalog lookup per file on the server.
POLL_SECONDS = 1.0
HTTP_TIMEOUT_SECONDS = 60.0
LFS_BATCH_ERRORS = "LFS batch API returned errors"


def endpoint_options(token_help: str) -> Callable[[F], F]:
    """--endpoint and --token; `token_help` says what the command needs the token for."""

    def decorate(func: F) -> F:
        func = click.option(
            "--token", envvar="DELTAHUB_TOKEN", default=None, show_envvar=True, help=token_help
        )(func)
        return click.option(
            "--endpoint",
            envvar="DELTAHUB_ENDPOINT",
            default=DEFAULT_ENDPOINT,
            show_default=True,
            show_envvar=True,
            help="URL of the deltahub server.",
        )(func)

    return decorate


def hf_client(endpoint: str, token: str | None, headers: dict[str, str] | None = None) -> HfApi:
    """An HfApi talking to `endpoint` over the LFS protocol, quiet, sending `token` and no other."""
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import disable_progress_bars, logging

    # The environment is read when huggingface_hub is first imported; set the flags for an earlier import too.
    constants.HF_HUB_DISABLE_XET = True
    disable_progress_bars()
    logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # untyped in huggingface_hub
    return HfApi(endpoint=endpoint.rstrip("/"), token=token or False, library_name="deltahub", headers=headers)


def whoami(api: HfApi, endpoint: str, token: str | None) -> dict[str, Any]:
    """Who the server says the token belongs to (name, access); AccessDenied without a usable token."""
    if not token:
        raise AccessDenied(detail="no token given")
    with remote_errors(endpoint, ""):
        identity: dict[str, Any] = api.whoami()
    return identity


def can_write(identity: dict[str, Any]) -> bool:
    return bool(identity.get("auth", {}).get("accessToken", {}).get("role", "write") == "write")


def full_repo_id(repo: str, identity: dict[str, Any] | None) -> str:
    """REPO as the hub names it. Every repository on a deltahub hub has a namespace; a bare name is the
    caller's own, which is where the hub's create route (and so `hf upload NAME`) puts it."""
    namespace, name = split_repo_id(repo)
    if namespace:
        return repo
    if identity is None:
        raise InvalidRepoName(
            repo_id=repo, reason="it has no namespace: pass namespace/name (with --token, a bare name means yours)"
        )
    qualified = f"{identity['name']}/{name}"
    split_repo_id(qualified)
    err_console.print(f"{repo!r} has no namespace: using {qualified} (the token's own namespace)", soft_wrap=True)
    return qualified


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [httpx.TransportError, ConnectionError]
    try:
        import httpx2  # what recent huggingface_hub releases use instead of httpx

        found.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(found)


def _server_message(exc: Any) -> str:
    message = getattr(exc, "server_message", None)
    if message:
        return str(message).strip()
    response = getattr(exc, "response", None)
    if response is not None:
        header = response.headers.get("X-Error-Message")
        if header:
            return str(header)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def error_for_status(status: int, message: str) -> DeltahubError:
    if status in (401, 403):
        return AccessDenied(detail=f"{status}: {message}")
    if status == 404:
        return NotFound(detail=message)
    if status == 409:
        return Conflict(detail=message)
    if 400 <= status < 500:
        return InvalidInput(detail=message)
    return ServerFailed(detail=f"{status}: {message}")


@contextmanager
def remote_errors(endpoint: str, repo_id: str, revision: str | None = None) -> Iterator[None]:
    """Turn the client's exceptions into deltahub errors that say what to do."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except RevisionNotFoundError as exc:
        raise RevisionNotFound(repo_id=repo_id, revision=revision or "main") from exc
    except RemoteEntryNotFoundError as exc:
        raise EntryNotFound(repo_id=repo_id, revision=revision or "main", path=_server_message(exc)) from exc
    except RepositoryNotFoundError as exc:
        if exc.response is not None and exc.response.status_code in (401, 403):
            raise error_for_status(exc.response.status_code, _server_message(exc)) from exc
        raise RepoNotFound(
            f"repository {repo_id!r} not found at {endpoint} (a private repository needs --token)", repo_id=repo_id
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 500
        raise error_for_status(status, _server_message(exc)) from exc
    except _transport_errors() as exc:
        raise ServerUnreachable(endpoint=endpoint, reason=_server_message(exc)) from exc
    except ValueError as exc:
        # The client reports objects the LFS batch answer refused (too large, ...) as a bare ValueError.
        text = str(exc)
        if not text.startswith(LFS_BATCH_ERRORS):
            raise
        refused = " ".join(line.strip().replace("`", "") for line in text.splitlines()[1:])
        raise InvalidInput(detail=f"the server refused to take some files: {refused}") from exc


class NativeClient:
    """deltahub's own /api/v1 routes (ingest state, storage accounting)."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self._http.get(path)
        except httpx.TransportError as exc:
            raise ServerUnreachable(endpoint=self.endpoint, reason=str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            message = response.headers.get("X-Error-Message") or response.text[:200]
            raise error_for_status(response.status_code, message)
        answer: dict[str, Any] = response.json()
        return answer

    def file(self, sha256: str) -> dict[str, Any]:
        return self._get(f"/api/v1/files/{quote(sha256)}")

    def stats(self) -> dict[str, Any]:
        return self._get("/api/v1/stats")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise ServerUnreachable(endpoint=self.endpoint, reason=str(exc) or type(exc).__name__) from exc
        if response.status_code >= 400:
            message = response.headers.get("X-Error-Message") or response.text[:200]
            raise error_for_status(response.status_code, message)
        return response.json() if response.content else None
