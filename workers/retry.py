"""The one retry policy of ingest, shared by the embedded pool, the Celery task and the job itself.

An attempt that fails is retried after an exponential back-off, up to MAX_ATTEMPTS attempts in all,
counted in the catalog across every delivery; an attempt refused for the user's own bytes
(`InvalidInput`) is final at once, since the same bytes would be refused again. Every other failure,
a bug included (`InternalError`), is retried: it may be transient, and a bug must not fail a user's
file for good.
"""

from __future__ import annotations

from storage.core.errors import InvalidInput

# Attempts before a job is marked failed; its staged bytes stay and are served from staging.
MAX_ATTEMPTS = 5
# First retry after 1 s, doubling: the 5 attempts span ~15 s, enough to ride out a store or database
# restart. `celery worker --ingest-retry-base` overrides it for a Celery worker.
RETRY_BASE_SECONDS = 1.0
# Longest wait before a retry, whatever the attempt: a job must not sit idle longer than it runs.
RETRY_MAX_SECONDS = 300.0


def retry_delay(attempt: int, base_seconds: float = RETRY_BASE_SECONDS) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped."""
    return min(RETRY_MAX_SECONDS, base_seconds * 2.0 ** (attempt - 1))


def is_retryable(exc: BaseException) -> bool:
    """False only for a refusal of the user's bytes: no retry can change the answer."""
    return not isinstance(exc, InvalidInput)


def is_final(exc: BaseException, attempt: int) -> bool:
    """Whether failed attempt number `attempt` (1-based) ends the job for good."""
    return not is_retryable(exc) or attempt >= MAX_ATTEMPTS
