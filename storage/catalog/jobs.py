"""Catalog queries for ingest jobs: queueing, claiming, finishing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from storage.catalog import counters
from storage.catalog.models import FileObject, FileState, IngestJob, JobState, utcnow

UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class JobView:
    id: int
    file_sha256: str
    repo_id: int | None
    path: str | None
    state: str
    attempts: int
    error: str | None


def _view(job: IngestJob) -> JobView:
    return JobView(job.id, job.file_sha256, job.repo_id, job.path, job.state, job.attempts, job.error)


def queue_ingest(session: Session, repo_id: int, added: Sequence[tuple[str, str]]) -> list[int]:
    """A job for each added file that is not stored yet (or awaits repair) and has no unfinished job."""
    job_ids: list[int] = []
    seen: set[str] = set()
    for path, sha256 in added:
        if sha256 in seen:
            continue
        seen.add(sha256)
        file = session.get(FileObject, sha256)
        # A stored file with a staged copy is a damaged file pushed again: its ingest repairs it.
        if file is None or (file.state == FileState.STORED and file.staging_key is None):
            continue
        pending = session.scalar(
            select(IngestJob.id).where(IngestJob.file_sha256 == sha256, IngestJob.state.in_(UNFINISHED))
        )
        if pending is not None:
            continue
        if file.state == FileState.FAILED:
            file.state, file.error = FileState.STAGED, None
        job = IngestJob(file_sha256=sha256, repo_id=repo_id, path=path, state=JobState.QUEUED)
        session.add(job)
        session.flush()
        job_ids.append(job.id)
    return job_ids


def queue_repair(session: Session, sha256: str) -> int | None:
    """A job for a damaged file whose bytes were just uploaded again (no repository: none is needed to
    repair it); None when one is unfinished already."""
    pending = session.scalar(
        select(IngestJob.id).where(IngestJob.file_sha256 == sha256, IngestJob.state.in_(UNFINISHED))
    )
    if pending is not None:
        return None
    job = IngestJob(file_sha256=sha256, repo_id=None, path=None, state=JobState.QUEUED)
    session.add(job)
    session.flush()
    return job.id


def get_job(session: Session, job_id: int) -> JobView | None:
    job = session.get(IngestJob, job_id)
    return _view(job) if job else None


def start_job(session: Session, job_id: int) -> JobView | None:
    """Mark a job running and count the attempt; None when it is already done (a redelivery)."""
    job = session.get(IngestJob, job_id)
    if job is None or job.state == JobState.DONE:
        return None
    job.state = JobState.RUNNING
    job.attempts += 1
    job.updated_at = utcnow()
    session.flush()
    return _view(job)


def finish_job(session: Session, job_id: int, *, seconds: float | None = None) -> None:
    """Mark a job done; `seconds` (the attempt's duration) is counted with its file's bytes, once: a
    job already done (a redelivery) changes nothing."""
    done = cast(CursorResult[Any], session.execute(
        update(IngestJob)
        .where(IngestJob.id == job_id, IngestJob.state != JobState.DONE)
        .values(state=JobState.DONE, error=None, updated_at=utcnow())
    ))
    if seconds is None or not done.rowcount:
        return
    file_of_job = select(FileObject.size).join(IngestJob, IngestJob.file_sha256 == FileObject.sha256)
    size = session.scalar(file_of_job.where(IngestJob.id == job_id))
    counters.observe(session, counters.INGEST_DURATION, seconds)
    counters.add(session, counters.INGEST_BYTES, int(size or 0))
    counters.add(session, counters.INGEST_ATTEMPTS, 1, "done")


def fail_job(session: Session, job_id: int, error: str, *, final: bool) -> None:
    """Record an attempt's error; a final failure marks the file failed (its staged bytes stay served)."""
    job = session.get(IngestJob, job_id)
    if job is None:
        return
    job.error = error
    job.updated_at = utcnow()
    job.state = JobState.FAILED if final else JobState.QUEUED
    counters.add(session, counters.INGEST_ATTEMPTS, 1, "failed" if final else "retry")
    if final:
        file = session.get(FileObject, job.file_sha256)
        if file is not None and file.state != FileState.STORED:
            file.state, file.error = FileState.FAILED, error


def jobs_for_file(session: Session, sha256: str) -> list[JobView]:
    rows = session.scalars(select(IngestJob).where(IngestJob.file_sha256 == sha256).order_by(IngestJob.id))
    return [_view(j) for j in rows]


def unfinished_jobs(session: Session) -> list[int]:
    return list(session.scalars(select(IngestJob.id).where(IngestJob.state.in_(UNFINISHED)).order_by(IngestJob.id)))


def stale_running_jobs(session: Session, started_before: datetime) -> list[int]:
    """Jobs marked running whose last update is older than any attempt may last: their worker died."""
    rows = session.scalars(
        select(IngestJob.id)
        .where(IngestJob.state == JobState.RUNNING, IngestJob.updated_at < started_before)
        .order_by(IngestJob.id)
    )
    return list(rows)
