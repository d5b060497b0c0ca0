"""The operator's routes: liveness, readiness and Prometheus metrics (the older /api/v1/health stays).

Liveness answers as long as the process serves requests, and touches nothing else: an orchestrator
restarts a process that fails it, and a database outage must not restart every replica. Readiness asks
the catalog and the object store: a replica that cannot reach them is taken out of rotation instead.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import AuthenticatedDep, HubDep
from service.metrics import Instruments
from service.policy import Rule, policy

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
@policy(Rule.PUBLIC)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the catalog and the object store answer",
            responses={503: {"description": "The catalog or the store is unreachable"}})
@policy(Rule.PUBLIC)
def readyz(hub: HubDep) -> JSONResponse:
    answers = hub.health()
    ready = all(answers.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", **answers}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (any valid token)", response_class=Response)
@policy(Rule.AUTHENTICATED)
def metrics(request: Request, _caller: AuthenticatedDep) -> Response:
    instruments = cast(Instruments, request.app.state.instruments)
    return Response(instruments.exposition(), media_type=CONTENT_TYPE_LATEST)
