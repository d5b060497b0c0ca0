"""One ingest at a time per family, so relatives ingested together see each other.

Two fine-tunes of one base pushed at once would otherwise each choose a base before the other is
stored: both stored plain, then one re-encoded against the other by settling, holding twice the bytes
until GC's grace passes. With the family's lease (storage/catalog/sketches.py) the later one waits for
the earlier to commit and then measures it as a candidate like any stored relative.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from storage.catalog import sketches
from storage.catalog.models import utcnow
from workers.jobs.context import JobContext

log = logging.getLogger(__name__)

# Waiting ingests look again this often: an ingest of a small model takes ~100 ms, a large one seconds.
POLL_SECONDS = 0.05
# The holder renews its lease this often from a thread of its own; a lease not renewed for STALE_SECONDS
# belongs to an ingest that died (SIGKILL, OOM, power cut) and is taken over.
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0


@contextmanager
def family_lease(ctx: JobContext, fingerprint: str, sha256: str) -> Iterator[None]:
    """Hold the family's ingest lease for the block, waiting for the ingest that holds it. A retry of
    the same file takes over its earlier attempt's lease at once (that attempt died, or is a duplicate
    delivery, which stores nothing twice)."""
    owner = f"{sha256}:{uuid.uuid4().hex}"
    waited = time.monotonic()
    while True:
        with ctx.session() as s:
            if sketches.take_family(s, fingerprint, owner, stale_before=utcnow() - timedelta(seconds=STALE_SECONDS)):
                break
        time.sleep(POLL_SECONDS)
    if time.monotonic() - waited > POLL_SECONDS:
        log.info("waited %.2f s for family %s", time.monotonic() - waited, fingerprint[:12])
    done = threading.Event()

    def renew() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            with ctx.session() as s:
                sketches.renew_family(s, fingerprint, owner)

    heartbeat = threading.Thread(target=renew, name=f"family-lease-{fingerprint[:8]}", daemon=True)
    heartbeat.start()
    try:
        yield
    finally:
        done.set()
        heartbeat.join()
        with ctx.session() as s:
            sketches.release_family(s, fingerprint, owner)
