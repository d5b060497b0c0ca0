"""`deltahub serve` (the HTTP API, with an in-process worker in embedded mode) and `deltahub worker`."""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.cli.common import CannotListen, console, data_dir_option, err_console, redact_url, settings_for
from storage.core.errors import DeltahubError, InvalidInput
from storage.settings import Settings

if TYPE_CHECKING:
    from storage.app.hub import Hub

LOG_LEVELS = click.Choice(["critical", "error", "warning", "info", "debug"])


def describe(settings: Settings) -> str:
    catalog = redact_url(settings.resolved_database_url)
    if settings.store_backend == "s3":
        store = f"s3://{settings.s3_bucket}/{settings.s3_prefix}"
    else:
        store = str(settings.resolved_store_dir)
    ingest = "in-process worker" if settings.embedded else f"Celery via {redact_url(settings.broker_url or '')}"
    return f"catalog {catalog}, store {store}, ingest by {ingest}"


@click.command()
@click.option("--host", default=None, help="Interface to listen on [default: $DELTAHUB_HOST or 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: $DELTAHUB_PORT or 8000].")
@data_dir_option
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True, help="uvicorn's log level.")
def serve(host: str | None, port: int | None, data_dir: Path | None, log_level: str) -> None:
    """Serve the hub over HTTP (Hugging Face-compatible routes and /api/v1).

    With no DELTAHUB_* settings this is the embedded mode: a SQLite catalog, a local object store and
    an in-process ingest worker, all under the data directory. DELTAHUB_DATABASE_URL,
    DELTAHUB_STORE_BACKEND=s3 and DELTAHUB_BROKER_URL switch to PostgreSQL, S3 and Celery workers.
    """
    import uvicorn

    from service import logmask
    from service.app import create_app
    from service.tokens import CatalogTokenStore, ensure_admin_token
    from workers.runtime import open_hub

    settings = settings_for(data_dir, host=host, port=port)
    # JSON logs: our handler on every logger from here on, uvicorn's own logging config left out.
    logging_config: dict[str, Any] = {}
    if settings.log_format == "json":
        from service.metrics import configure_logging

        configure_logging("json", logging.getLevelName(log_level.upper()))
        logging_config["log_config"] = None
    # Bound before anything is opened or created: a server that cannot listen leaves no data directory
    # or admin token behind, and says so in one line (uvicorn would log its own error and exit 3).
    listener = listen(settings.host, settings.port)
    hub = open_hub(settings)
    tokens = CatalogTokenStore(hub.session)
    console.print(f"deltahub: {describe(settings)}")
    if settings.embedded:
        written = ensure_admin_token(tokens, settings.data_dir)
        if written is not None:
            console.print(
                f"created an admin token (write access), written to {written} (readable by you only);"
                " pass it as --token or HF_TOKEN"
            )
    app = create_app(hub, settings, tokens)
    logmask.install()
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, **logging_config)
    )
    console.print(f"deltahub: serving on http://{_address(settings.host, settings.port)} (Ctrl-C to stop)")
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; stopping is what was asked for
    finally:
        listener.close()
        _close(hub)
    if not server.started:
        raise DeltahubError(detail="the server failed to start (its log above says why)")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, as uvicorn binds one (SO_REUSEADDR, IPv6 for an address with ':')."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise CannotListen(address=_address(host, port), reason=reason) from exc
    sock.set_inheritable(True)
    return sock


def _close(hub: Hub) -> None:
    if hub.settings.embedded:
        err_console.print(
            "deltahub: stopping the ingest worker after its current jobs"
            " (Ctrl-C again to stop now; they resume on restart)"
        )
    try:
        hub.close()
    except KeyboardInterrupt:
        # Ingest is idempotent and unfinished jobs are resumed on the next start: nothing is lost.
        os._exit(130)


@click.command()
@click.option(
    "--concurrency", "-c", type=int, default=None, help="Ingest processes [default: $DELTAHUB_INGEST_WORKERS or 2]."
)
@data_dir_option
@click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True, help="Celery's log level.")
def worker(concurrency: int | None, data_dir: Path | None, log_level: str) -> None:
    """Run a Celery ingest worker for a distributed deployment (same settings as `serve`).

    Start as many as you like, on any machine that reaches the broker, database and object store.
    """
    settings = settings_for(data_dir)
    if settings.embedded:
        raise InvalidInput(
            detail="a worker needs a broker: set DELTAHUB_BROKER_URL (e.g. redis://host:6379/0); "
            "in embedded mode `deltahub serve` runs ingest itself"
        )
    if concurrency is not None and concurrency < 1:
        raise InvalidInput(detail=f"--concurrency must be at least 1, not {concurrency}")
    from workers.celery_worker import run_worker

    run_worker(settings, concurrency=concurrency or settings.ingest_workers, loglevel=log_level.upper())
