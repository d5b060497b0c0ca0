"""Catalog queries behind the maintenance jobs (rebase planning, requeue): set-based, a fixed number of
queries whatever the number of files."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from storage.catalog.models import FileObject, FileState, IngestJob, Ref, Repository, TreeEntry
from storage.core.errors import InvalidInput
from storage.core.names import split_repo_id

DEFAULT_BRANCH = "main"


@dataclass(frozen=True, slots=True)
class RebaseCandidate:
    sha256: str
    onto: str
    onto_path: str
    declared_base: str


def rebase_candidates(session: Session) -> list[RebaseCandidate]:
    """Stored weight files (of any format that parses tensors: only those have a fingerprint) whose
    declared base repository holds, on its main branch, a stored file of the same architecture that they
    are not yet coded against (the same path preferred, as in sharded models)."""
    rows = session.execute(
        select(FileObject.sha256, FileObject.declared_base, FileObject.fingerprint, FileObject.base_sha256).where(
            FileObject.state == FileState.STORED,
            FileObject.declared_base.is_not(None),
            FileObject.fingerprint.is_not(None),
        )
    )
    # The WHERE clause rules out NULL claims and fingerprints.
    claims = [(sha, str(declared), str(fingerprint), base) for sha, declared, fingerprint, base in rows]
    if not claims:
        return []
    # Every stored file on the main branch of the repositories the claims name, in one query.
    wanted = {declared for _, declared, _, _ in claims}
    named = [split for declared in wanted if (split := _split(declared)) is not None]
    base_files: dict[str, list[tuple[str, str, str | None]]] = {}
    if named:
        tree = session.execute(
            select(Repository.namespace, Repository.name, TreeEntry.path, FileObject.sha256, FileObject.fingerprint)
            .join(Ref, (Ref.repo_id == Repository.id) & (Ref.name == DEFAULT_BRANCH))
            .join(TreeEntry, (TreeEntry.repo_id == Ref.repo_id) & (TreeEntry.commit_oid == Ref.commit_oid))
            .join(FileObject, FileObject.sha256 == TreeEntry.file_sha256)
            .where(FileObject.state == FileState.STORED, FileObject.fingerprint.is_not(None))
            .where(or_(*(and_(Repository.namespace == ns, Repository.name == name) for ns, name in named)))
        )
        for namespace, name, path, sha, fingerprint in tree:
            repo_id = f"{namespace}/{name}" if namespace else name
            base_files.setdefault(repo_id, []).append((path, sha, fingerprint))
    my_paths = _paths_of(session, [sha for sha, *_ in claims])
    out = []
    for sha, declared, fingerprint, current_base in claims:
        candidates = sorted(
            (path not in my_paths.get(sha, set()), path, other)
            for path, other, other_fingerprint in base_files.get(declared, [])
            if other != sha and other_fingerprint == fingerprint
        )
        if candidates and candidates[0][2] != current_base:
            _, path, onto = candidates[0]
            out.append(RebaseCandidate(sha, onto, path, declared))
    return out


def _split(repo_id: str) -> tuple[str, str] | None:
    """A declared base as (namespace, name); None for a claim no repository can have."""
    try:
        return split_repo_id(repo_id)
    except InvalidInput:
        return None


def _paths_of(session: Session, shas: list[str]) -> dict[str, set[str]]:
    paths: dict[str, set[str]] = {}
    for start in range(0, len(shas), 500):
        rows = session.execute(
            select(TreeEntry.file_sha256, TreeEntry.path).where(TreeEntry.file_sha256.in_(shas[start : start + 500]))
        )
        for sha, path in rows:
            paths.setdefault(sha, set()).add(path)
    return paths


@dataclass(frozen=True, slots=True)
class FailedFile:
    sha256: str
    # Where its latest ingest job found it; None when that repository is gone.
    repo_id: int | None
    path: str | None


def failed_files(session: Session) -> list[FailedFile]:
    """Files whose ingest failed for good, each with the repository and path of its latest job."""
    latest = (
        select(IngestJob.file_sha256, func.max(IngestJob.id).label("job_id"))
        .group_by(IngestJob.file_sha256)
        .subquery()
    )
    rows = session.execute(
        select(FileObject.sha256, IngestJob.repo_id, IngestJob.path)
        .outerjoin(latest, latest.c.file_sha256 == FileObject.sha256)
        .outerjoin(IngestJob, IngestJob.id == latest.c.job_id)
        .where(FileObject.state == FileState.FAILED)
        .order_by(FileObject.sha256)
    )
    return [FailedFile(sha, repo_id, path) for sha, repo_id, path in rows]

