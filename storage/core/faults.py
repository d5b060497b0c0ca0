"""Named crash points for fault injection: the process kills itself where a test asks it to.

Crash-safety tests run a worker or the API in a subprocess with ``DELTAHUB_CRASH_AT=<name>`` (or
``<name>:<n>`` for the n-th time the point is reached) and expect it to die by SIGKILL right there, the way
a power cut or the OOM killer would stop it: no ``finally`` blocks, no rollback, no flush. The restarted
process must then find every committed file whole and leave nothing behind that GC cannot collect.

``DELTAHUB_CRASH_SIGNAL=SIGSTOP`` freezes the process there instead, once, so a test can cut off a
service it depends on (the S3 server) at an exact step and then let it run on into the outage.

The variables are read once, at import: in production they are unset and a crash point costs one string
comparison. Every point in the code base is listed in :data:`CRASH_POINTS`, so tests can check that
each one is placed and reached.
"""

from __future__ import annotations

import os
import signal
import threading

ENV_VAR = "DELTAHUB_CRASH_AT"
SIGNAL_ENV_VAR = "DELTAHUB_CRASH_SIGNAL"

# Where the write path may be cut, in the order a push meets them (docs/reliability.md).
CRASH_POINTS: tuple[str, ...] = (
    # API process
    "api.lfs_put_received",  # an LFS PUT is staged and recorded, the response not yet sent
    "api.commit_parsed",  # the ndjson commit is parsed and its inline files staged, no commit yet
    "api.commit_done",  # the commit exists, the response not yet sent
    # uploads (storage/app/staging.py, storage/app/hub.py)
    "upload.mid_stream",  # while bytes stream into a staging write (n-th chunk)
    "upload.after_staging_put",  # the staging object is complete, nothing checked or recorded
    "upload.before_file_row",  # checked and sniffed, the file row not yet inserted
    "upload.after_file_row",  # the file row is committed
    # commits (storage/app/hub.py)
    "commit.before_transaction",
    "commit.in_transaction",  # commit row, tree, branch move and jobs written, not committed
    "commit.after_transaction",  # committed, the jobs not yet queued
    # git push (storage/app/git_push.py)
    "git.push_staged",  # the pack's regular files staged, no commit yet
    "git.push_in_transaction",  # the pushed commits, branch move and jobs written, not committed
    # pull-through mirror (storage/app/mirror.py)
    "mirror.claimed",  # this process holds the file's fetch claim, nothing fetched yet
    "mirror.mid_transfer",  # after the n-th chunk of the upstream's body passed into staging
    "mirror.fetched",  # the file staged, checked and its claim finished; no commit yet
    "mirror.in_transaction",  # the mirrored commit, its jobs, ref and lookup written, not committed
    # ingest (workers/jobs/ingest.py, workers/jobs/encoding.py, workers/jobs/lineage.py)
    "ingest.after_start_job",
    "ingest.after_hashing",
    "ingest.after_choose_base",
    "ingest.mid_encode",  # after the n-th frame of the file is encoded and verified
    "ingest.after_object_write",  # after the n-th store object is written
    "ingest.before_mark_stored",  # inside the catalog transaction: rows recorded, file not yet stored
    "ingest.before_catalog_commit",  # inside the catalog transaction: file marked stored, not committed
    "ingest.after_catalog_commit",  # committed; the staging object not yet deleted
    "ingest.after_staging_delete",  # staging deleted; rebase of dependents not yet run
    "ingest.before_finish_job",  # everything done but the job row
    # rebase (workers/jobs/lineage.py)
    "rebase.after_objects_written",  # new frames written, the swap not begun
    "rebase.mid_swap",  # inside the swap transaction, after the n-th tensor is swapped
    "rebase.after_swap",  # swap committed, the file's base not yet reported
    # garbage collection (workers/jobs/gc.py)
    "gc.mid_catalog_deletes",  # inside the catalog transaction: rows deleted, not committed
    "gc.after_catalog_deletes",  # rows gone, their objects not yet deleted
    "gc.mid_object_deletes",  # after the n-th object is deleted
)


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, nth = value.partition(":")
    return name, int(nth) if nth else 1


_TARGET, _NTH = _parse(os.environ.get(ENV_VAR))
_SIGNAL = signal.Signals[os.environ.get(SIGNAL_ENV_VAR) or "SIGKILL"]
_hits = 0
_lock = threading.Lock()


def armed() -> str | None:
    """The crash point this process will die at, if any."""
    return _TARGET


def crash_point(name: str) -> None:
    """Die by SIGKILL (or stop) if this is the armed point at its n-th hit; otherwise do nothing."""
    if name != _TARGET:
        return
    global _hits
    with _lock:
        _hits += 1
        if _hits == _NTH:
            # To this thread: it takes the signal before running another line, where a signal to the
            # process may be taken by another thread while this one runs on past the point.
            signal.pthread_kill(threading.get_ident(), _SIGNAL)
