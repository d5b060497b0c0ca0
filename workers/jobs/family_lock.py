"""One ingest at a time per family, so relatives ingested together see each other.

Two fine-tunes of one base pushed at once would otherwise each choose a base before the other is
stored: both stored plain, then one re-encoded against the other by settling, holding twice the bytes
until GC's grace passes. With the family's lease (storage/catalog/sketches.py) the later one waits for
the earlier to commit and then measures it as a candidate like any stored relative.
"""

from __future__ import annotations

import logging
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


@contextmanager
def family_lease(ctx: JobContext, fingerprint: str) -> Iterator[None]:
    """Hold the family's ingest lease for the block, waiting for the ingest that holds it. A lease older
    than half the GC grace period is taken over: its ingest has abandoned itself by then (ingest.py)."""
    owner = uuid.uuid4().hex
    lease = timedelta(seconds=ctx.settings.gc_grace_seconds / 2)
    waited = time.monotonic()
    while True:
        with ctx.session() as s:
            if sketches.take_family(s, fingerprint, owner, stale_before=utcnow() - lease):
                break
        time.sleep(POLL_SECONDS)
    if time.monotonic() - waited > POLL_SECONDS:
        log.info("waited %.2f s for family %s", time.monotonic() - waited, fingerprint[:12])
    try:
        yield
    finally:
        with ctx.session() as s:
            sketches.release_family(s, fingerprint, owner)
