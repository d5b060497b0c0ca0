"""The FastAPI application: Hugging Face-compatible routes and deltahub's own /api/v1.

``create_app`` takes everything it serves from its arguments (no globals, no settings read at import),
so the API server, tests and several replicas in one process each build their own app.
"""

from __future__ import annotations

from fastapi import FastAPI

from service.auth import TokenStore
from service.deps import ServiceState, TransferCounters
from service.errors import install_error_handlers
from service.limits import BodyLimit
from service.options import ServiceOptions
from service.paths import EncodedSlashRouting
from service.routes import commit, hf, lfs, listings, native, refs, repos, resolve
from service.signing import UploadSigner
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
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=options.max_json_bytes)
    app.add_middleware(EncodedSlashRouting)
    # Fixed prefixes first; the download route matches "/{namespace}/{name}/resolve/..." and goes last.
    for module in (native, repos, listings, refs, hf, commit, lfs, resolve):
        app.include_router(module.router)
    return app
