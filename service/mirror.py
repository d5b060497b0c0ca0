"""The pull-through mirror at the HTTP edge: every read of a repository first asks the hub to hold the
revision it names (storage/app/mirror.py), and the answer says what the mirror did in
``X-Deltahub-Mirror`` (hit, fetched, refreshed, stale)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import TokenInfo
from service.paths import param
from service.policy import Policy
from storage.app.hub import HubApi

HEADER = b"x-deltahub-mirror"
STATE_KEY = "mirror"
DEFAULT_REVISION = "main"


def pull_for_request(
    hub: HubApi, scope: Scope, repo_id: str, repo_type: str, caller: TokenInfo | None, policy: Policy
) -> None:
    """Hold the route's revision (main for routes that name none) if the mirror has a say in it."""
    raw = scope.get("path_params", {}).get("revision")
    revision = param(raw) if raw else DEFAULT_REVISION
    allowed = policy.may_read(caller, repo_id, private=True)
    status = hub.pull(repo_id, revision, repo_type=repo_type, may_read_private=allowed)
    if status is not None:
        scope.setdefault("state", {})[STATE_KEY] = str(status)


class MirrorHeader:
    """Adds ``X-Deltahub-Mirror`` to the response of a request the mirror answered for."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = scope.get("state", {}).get(STATE_KEY)
                if status is not None:
                    message["headers"] = [*message.get("headers", []), (HEADER, str(status).encode())]
            await send(message)

        await self.app(scope, receive, marking_send)
