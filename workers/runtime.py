"""Wiring: a Hub with the ingest queue the settings choose (in-process pool, or Celery via a broker)."""

from __future__ import annotations

from storage.app.hub import Hub
from storage.settings import Settings
from workers.celery_queue import CeleryQueue
from workers.inprocess import InProcessQueue


def open_hub(settings: Settings, *, migrate: bool | None = None, resume: bool = True) -> Hub:
    """The hub for this process. Embedded mode (no broker) migrates the catalog and runs jobs in-process;
    `resume` queues again the jobs an earlier process left unfinished."""
    if not settings.embedded:
        return Hub.from_settings(
            settings, migrate=bool(migrate), queue_for=lambda hub: CeleryQueue(settings, hub.session)
        )
    hub = Hub.from_settings(
        settings,
        migrate=True if migrate is None else migrate,
        queue_for=lambda hub: InProcessQueue(hub, threads=settings.ingest_workers),
    )
    if resume and isinstance(hub.queue, InProcessQueue):
        hub.queue.resume()
    return hub
