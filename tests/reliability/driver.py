"""The process the crash tests kill: ``python -m tests.reliability.driver <action> [port]``.

It reads its hub's settings from ``DELTAHUB_*`` variables like any deltahub process, and dies wherever
``DELTAHUB_CRASH_AT`` says (storage/core/faults.py). Actions:

- ``steps``: run the scenario's steps (uploads, commits, ingest, rebase, GC) as a worker would;
- ``resume``: run every unfinished ingest job with the embedded worker's retries, then exit;
- ``serve <port>``: the HTTP API with the embedded worker, as ``deltahub serve`` runs it.

``DELTAHUB_TEST_S3_TIMEOUT`` (seconds) shortens the S3 client's timeouts, so an outage is felt in
seconds rather than minutes (the settings object has no such knob: production keeps boto's defaults).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

from storage.app.hub import Hub
from storage.settings import Settings, load_settings

API_TOKEN = "dh-reliability-writer"


def open_test_hub(settings: Settings) -> Hub:
    timeout = os.environ.get("DELTAHUB_TEST_S3_TIMEOUT")
    if settings.store_backend != "s3" or not timeout:
        return Hub.from_settings(settings, migrate=True)
    from storage.catalog.db import upgrade
    from storage.objectstore import open_store

    upgrade(settings.resolved_database_url)
    store = open_store(settings, connect_timeout=float(timeout), read_timeout=float(timeout), max_attempts=2)
    return Hub(settings, store=store)


def resume(hub: Hub) -> None:
    from workers.inprocess import InProcessQueue

    queue = InProcessQueue(hub, threads=1)
    queue.resume()
    queue.wait(timeout=120)
    queue.close()


def serve(port: int) -> None:
    import uvicorn

    from service.app import create_app
    from service.auth import StaticTokenStore, TokenInfo
    from service.options import ServiceOptions
    from workers.runtime import open_hub

    settings = load_settings()
    hub = open_hub(settings)
    tokens = StaticTokenStore({API_TOKEN: TokenInfo("alice", True, hub_admin=True)})
    # Files over 4 kB go by LFS, so one push uses every upload route.
    options = replace(ServiceOptions.from_settings(settings), regular_file_max_bytes=4096)
    uvicorn.run(create_app(hub, settings, tokens, options=options), host="127.0.0.1", port=port,
                log_level="warning")


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    action = argv[0]
    if action == "serve":
        serve(int(argv[1]))
        return
    from tests.reliability import scenario

    hub = open_test_hub(load_settings())
    if action == "steps":
        scenario.run_steps(hub)
    elif action == "resume":
        resume(hub)
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
