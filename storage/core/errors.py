"""One error hierarchy for deltahub.

Every error knows the HTTP status it maps to and the CLI exit code it ends with. The class docstring is
the message template; raise with keyword arguments that fill it, e.g.
``raise HeaderTooLarge(length=..., limit=...)``. Vendor exceptions (boto3, SQLAlchemy) never cross a
module boundary: adapters turn them into one of these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DeltahubError(Exception):
    """{detail}"""

    status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    # The value of the X-Error-Code header the Hugging Face client understands, where one applies.
    error_code: ClassVar[str | None] = None

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        if message is None:
            template = (self.__doc__ or "{detail}").strip().splitlines()[0]
            message = template.format(**fields)
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(DeltahubError):
    """invalid input: {detail}

    Only for bytes or parameters a user sent: an ingest that raises it is failed for good at once,
    without a retry, since the same bytes would be refused again.
    """

    status = 400
    exit_code = 2


class InternalError(DeltahubError):
    """internal error: {detail}

    A caller inside deltahub broke a contract (a bug, not a user's bytes): logged with its traceback
    and retried like any other failure, never reported as the user's fault.
    """

    status = 500
    exit_code = 1


class NotFound(DeltahubError):
    """not found: {detail}"""

    status = 404
    exit_code = 3


class Conflict(DeltahubError):
    """conflict: {detail}"""

    status = 409
    exit_code = 4


class IntegrityError(DeltahubError):
    """stored data failed an integrity check: {detail}"""

    status = 500
    exit_code = 5


class CorruptFrame(IntegrityError):
    """corrupt frame: {detail}"""


class CorruptPack(IntegrityError):
    """corrupt pack: {detail}"""


class StoreError(DeltahubError):
    """object store error: {detail}"""

    status = 503
    exit_code = 6


class TransientStoreError(StoreError):
    """object store temporarily unavailable: {detail}"""


class IngestAbandoned(DeltahubError):
    """ingest attempt abandoned: {detail}

    The attempt gave itself up (it ran too long to commit safely); nothing is wrong with the user's
    bytes or the store, and the job is retried with fresh objects.
    """

    status = 503
    exit_code = 1


class CatalogUnavailable(TransientStoreError):
    """the catalog database is unreachable: {detail}"""


class CatalogNotMigrated(StoreError):
    """the catalog has no schema (run `deltahub admin migrate`): {detail}"""


class RepoNotFound(NotFound):
    """repository {repo_id!r} not found"""

    error_code = "RepoNotFound"


class RevisionNotFound(NotFound):
    """revision {revision!r} not found in repository {repo_id!r}"""

    error_code = "RevisionNotFound"


class EntryNotFound(NotFound):
    """{path!r} not found at revision {revision!r} of repository {repo_id!r}"""

    error_code = "EntryNotFound"


class FileNotStored(NotFound):
    """no file with sha256 {sha256} is stored"""


class FileDamaged(FileNotStored):
    """file {sha256} is damaged in storage (admin verify found it): upload its bytes again, then commit"""


class InvalidRepoName(InvalidInput):
    """invalid repository name {repo_id!r}: {reason}"""


class InvalidPath(InvalidInput):
    """invalid file path {path!r}: {reason}"""


class UploadMismatch(InvalidInput):
    """upload does not match what was declared: {detail}"""


class RepoExists(Conflict):
    """repository {repo_id!r} already exists"""


class StaleParent(Conflict):
    """branch {branch!r} moved: expected parent {expected}, head is {head}"""


class UpstreamError(DeltahubError):
    """mirror upstream error: {detail}

    The upstream hub of a pull-through mirror answered something unusable; nothing of it was stored.
    """

    status = 502
    exit_code = 7


class UpstreamUnavailable(UpstreamError):
    """the mirror's upstream hub is unreachable: {detail}"""


class UpstreamMismatch(UpstreamError):
    """the mirror's upstream sent bytes that do not match their hash: {detail}"""


class QuotaExceeded(DeltahubError):
    """namespace {namespace!r} would hold {would:,} logical bytes, over its quota of {limit:,} \
(it holds {usage:,} now): delete files or repositories, or ask an administrator to raise the quota"""

    # As the Hub answers a storage limit: forbidden, with the figures in the message.
    status = 403
    exit_code = 14


class GitPackTooLarge(InvalidInput):
    """git pack refused: more than {limit:,} bytes (the hub's DELTAHUB_GIT_MAX_PACK_BYTES); push fewer \
commits at a time, large files through git-lfs"""

    status = 413


class GitPackInflated(InvalidInput):
    """git pack refused: its objects unpack into more than {limit:,} bytes (the hub's \
DELTAHUB_GIT_MAX_UNPACKED_BYTES); push fewer commits at a time, large files through git-lfs"""

    status = 413


class GitPackInvalid(InvalidInput):
    """git pack refused: {detail}; nothing was stored"""


class GitNotServable(DeltahubError):
    """not supported by deltahub over git: {detail}"""

    status = 501
    exit_code = 2


class GitPushRefused(InvalidInput):
    """push to {ref} refused: {detail}"""


class GitNonFastForward(Conflict):
    """push to {ref} refused: non-fast-forward ({new} does not descend from {head}); deltahub keeps every \
branch's history: fetch, merge or rebase, then push"""
