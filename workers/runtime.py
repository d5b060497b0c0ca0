"""Wiring: a Hub with the ingest queue the settings choose (in-process pool, or Celery via a broker)."""

from __future__ import annotations

from storage.app.hub import Hub
from storage.settings import Settings
from workers.inprocess import InProcessQueue


def open_hub(settings: Settings, *, migrate: bool | None = None, resume: bool = True) -> Hub:
    """The hub for this process. Embedded mode (no broker) migrates the catalog and runs jobs in-process."""
    embedded = settings.broker_url is None
    hub = Hub.from_settings(settings, migrate=embedded if migrate is None else migrate)
    if embedded:
        queue = InProcessQueue(hub, threads=settings.ingest_workers)
        hub.queue = queue
        if resume:
            queue.resume()
    else:
        from workers.celery_queue import CeleryQueue

        hub.queue = CeleryQueue(settings)
    return hub
