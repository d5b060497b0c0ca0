"""Catalog queries of the pull-through mirror: which revisions it holds and when it last looked, the
claims that make each upstream file fetched once, and mirrored commits under the upstream's ids."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from storage.catalog.models import (
    Commit,
    FileObject,
    MirrorClaim,
    MirrorRevision,
    Ref,
    RefKind,
    Repository,
    TreeEntry,
    utcnow,
)
from storage.core.gitobjects import GitBlob, identity


def is_mirrored_repo(session: Session, repo: Repository) -> bool:
    return session.scalar(select(MirrorRevision.revision).where(MirrorRevision.repo_id == repo.id).limit(1)) is not None


def looked_up(session: Session, repo: Repository, revision: str) -> MirrorRevision | None:
    return session.get(MirrorRevision, (repo.id, revision))


def record_lookup(session: Session, repo: Repository, revision: str, commit_oid: str) -> None:
    row = session.get(MirrorRevision, (repo.id, revision))
    if row is None:
        session.add(MirrorRevision(repo_id=repo.id, revision=revision, commit_oid=commit_oid, fetched_at=utcnow()))
    else:
        row.commit_oid, row.fetched_at = commit_oid, utcnow()
    session.flush()


def add_commit(
    session: Session,
    repo: Repository,
    oid: str,
    files: Mapping[str, str],
    *,
    blobs: Mapping[str, GitBlob],
    message: str,
    parent_oid: str | None,
) -> bool:
    """The upstream's commit `oid` with its tree; False when this repository holds it already (another
    local repository mirroring the same upstream commit holds its own copy).

    `blobs` are the upstream's git blob ids (an LFS file's is its pointer's). The id stays the
    upstream's: the mirror does not hold the upstream's commit object, so its author and committer
    lines name the mirror and the id is not rebuilt from them (docs/compatibility.md)."""
    if session.get(Commit, (repo.id, oid)) is not None:
        return False
    lines = identity("deltahub mirror", utcnow(), "mirror@commits.deltahub")
    session.add(
        Commit(
            oid=oid, repo_id=repo.id, parent_oid=parent_oid, message=message, author=None,
            git_author=lines, git_committer=lines,
        )
    )
    session.flush()
    session.add_all(
        TreeEntry(repo_id=repo.id, commit_oid=oid, path=path, file_sha256=sha, lfs=blobs[path].lfs,
                  git_oid=blobs[path].oid)
        for path, sha in sorted(files.items())
    )
    session.flush()
    return True


def point_ref(session: Session, repo: Repository, name: str, kind: RefKind, oid: str) -> None:
    """Branch `name` moves to `oid` (the upstream decides where it is); a tag is made once, never moved."""
    ref = session.get(Ref, (repo.id, name))
    if ref is None:
        session.add(Ref(repo_id=repo.id, name=name, commit_oid=oid, kind=kind))
    elif ref.kind == RefKind.BRANCH:
        ref.commit_oid = oid
    session.flush()


# Claims


def insert_claim(session: Session, key: str, owner: str) -> None:
    """Raises the unique violation when someone holds the claim (the caller maps it)."""
    session.add(MirrorClaim(key=key, owner=owner, claimed_at=utcnow()))
    session.flush()


def claim_state(session: Session, key: str, owner: str, *, stale_before: datetime) -> tuple[str, str | None]:
    """("done", sha256) when the content is held; ("mine", None) when the claim is ours, now or after
    taking over one whose owner stopped heartbeating (or whose held file GC removed); ("busy", None)."""
    row = session.get(MirrorClaim, key, populate_existing=True)
    if row is None:
        return "gone", None
    if row.sha256 is not None and session.get(FileObject, row.sha256) is not None:
        return "done", row.sha256
    if row.owner == owner:
        return "mine", None
    if row.sha256 is None and row.claimed_at >= stale_before:
        return "busy", None
    taken = session.execute(
        update(MirrorClaim)
        .where(MirrorClaim.key == key, MirrorClaim.owner == row.owner, MirrorClaim.claimed_at == row.claimed_at)
        .values(owner=owner, claimed_at=utcnow(), sha256=None)
    )
    return ("mine", None) if cast("CursorResult[Any]", taken).rowcount == 1 else ("busy", None)


def heartbeat(session: Session, key: str, owner: str) -> None:
    session.execute(update(MirrorClaim).where(MirrorClaim.key == key, MirrorClaim.owner == owner)
                    .values(claimed_at=utcnow()))


def finish_claim(session: Session, key: str, owner: str, sha256: str) -> None:
    session.execute(update(MirrorClaim).where(MirrorClaim.key == key, MirrorClaim.owner == owner)
                    .values(sha256=sha256, claimed_at=utcnow()))


def release_claim(session: Session, key: str, owner: str) -> None:
    """A fetch that failed: the next asker claims it afresh."""
    session.execute(delete(MirrorClaim).where(MirrorClaim.key == key, MirrorClaim.owner == owner,
                                              MirrorClaim.sha256.is_(None)))
