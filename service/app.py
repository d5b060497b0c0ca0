"""The FastAPI application: Hugging Face-compatible routes and deltahub's own /api/v1.

``create_app`` takes everything it serves from its arguments (no globals, no settings read at import),
so the API server, tests and several replicas in one process each build their own app.
"""

from __future__ import annotations

from fastapi import FastAPI

from service.auth import TokenStore
from service.deps import ServiceState, TransferCounters
from service.errors import install_error_handlers
from service.limits import BodyLimit, StreamingRoutes
from service.metrics import Instruments, RequestInstruments, RouteCapture, ingest_rate
from service.mirror import MirrorHeader
from service.options import ServiceOptions
from service.paths import EncodedSlashRouting
from service.policy import Policy
from service.redirects import install_redirects
from service.routes import commit, git, hf, lfs, listings, native, ops, refs, repos, resolve, xet
from service.signing import UploadSigner
from service.streams import UploadGate
from service.web import install as install_web
from service.xet_tokens import CAS_TOKEN_TTL_SECONDS, CasTokenSigner
from storage.app.hub import HubApi
from storage.settings import Settings


def create_app(
    hub: HubApi, settings: Settings, tokens: TokenStore, *, options: ServiceOptions | None = None
) -> FastAPI:
    """The app serving `hub`; `options` defaults to the service tunables found in `settings`."""
    options = options or ServiceOptions.from_settings(settings)
    app = FastAPI(
        title="deltahub",
        summary="Model hub storage: Hugging Face-compatible push and pull, stored losslessly in less space",
        version="0.1.0",
    )
    app.state.deltahub = ServiceState(
        hub=hub,
        tokens=tokens,
        options=options,
        signer=UploadSigner(options.signing_key, options.upload_url_ttl_seconds),
        counters=TransferCounters(),
        uploads=UploadGate(options),
        policy=Policy(anonymous_read=options.anonymous_read),
    )
    app.state.deltahub_xet = xet.XetService(
        uploads=hub.xet,
        tokens=CasTokenSigner(options.signing_key, CAS_TOKEN_TTL_SECONDS),
    )
    app.state.instruments = instruments = Instruments(
        hub.browse.totals, lambda: ingest_rate(hub.browse.recent_ingest())
    )
    install_error_handlers(app)
    install_redirects(app)  # RepositoryNotFound for a moved repository's old name: a redirect instead
    app.add_middleware(RouteCapture)
    app.add_middleware(MirrorHeader)
    # Fixed prefixes first; the download route matches "/{namespace}/{name}/resolve/..." and goes last.
    routers = [module.router for module in (ops, native, repos, listings, refs, hf, commit, lfs, xet, git, resolve)]
    # Inside EncodedSlashRouting, so the body limit matches routes on the path the router will see.
    app.add_middleware(BodyLimit, limit=options.max_json_bytes, streams=StreamingRoutes(routers))
    app.add_middleware(EncodedSlashRouting)
    # Outermost: counts and times what the client sees, errors included.
    app.add_middleware(RequestInstruments, instruments=instruments)
    for router in routers:
        app.include_router(router)
    install_web(app)
    return app
