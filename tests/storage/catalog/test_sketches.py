"""Sketch rows and the family ingest lease, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from storage.catalog import sketches
from storage.catalog.db import session_factory
from storage.catalog.models import FileObject, FileState, utcnow

LAYOUT, OTHER, FAMILY = "a" * 64, "b" * 64, "f" * 64


def stored(session: Session, n: int, state: str = FileState.STORED) -> str:
    sha = f"{n:064x}"
    session.add(FileObject(sha256=sha, size=1, kind="safetensors", state=state, stored_at=utcnow()))
    session.flush()
    return sha


def test_sketches_are_found_by_layout_among_stored_files_only(catalog_session: Session) -> None:
    s = catalog_session
    one, two, three, staged = stored(s, 1), stored(s, 2), stored(s, 3), stored(s, 4, FileState.STAGED)
    sketches.record_sketch(s, one, LAYOUT, b"one")
    sketches.record_sketch(s, one, LAYOUT, b"again")  # a retried ingest records nothing twice
    sketches.record_sketch(s, two, LAYOUT, b"two")
    sketches.record_sketch(s, three, OTHER, b"three")
    sketches.record_sketch(s, staged, LAYOUT, b"staged")
    assert sketches.sketches_and_bases(s, LAYOUT, exclude=two) == [(one, b"one", None)]
    assert sketches.sketches_and_bases(s, LAYOUT, exclude="") == [(one, b"one", None), (two, b"two", None)]
    later = utcnow() + timedelta(seconds=5)
    assert sketches.sketches_and_bases(s, LAYOUT, exclude="", stored_after=later) == []
    assert sketches.file_sketch(s, three) == (OTHER, b"three")
    assert sketches.file_sketch(s, f"{9:064x}") is None
    s.execute(delete(FileObject).where(FileObject.sha256 == one))  # a collected file takes its sketch along
    assert sketches.file_sketch(s, one) is None


def test_one_owner_holds_a_family_lease_until_it_releases_it_or_goes_stale(migrated_engine: Engine) -> None:
    sessions = session_factory(migrated_engine)
    fresh = utcnow() - timedelta(minutes=30)
    with sessions.begin() as s:
        assert sketches.take_family(s, FAMILY, "f1:first", stale_before=fresh)
    with sessions.begin() as s:
        assert sketches.take_family(s, FAMILY, "f1:first", stale_before=fresh)  # already its own
        assert not sketches.take_family(s, FAMILY, "f2:second", stale_before=fresh)
        assert sketches.take_family(s, "e" * 64, "f2:second", stale_before=fresh)  # another family is free
    with sessions.begin() as s:
        sketches.release_family(s, FAMILY, "f2:second")  # not its lease: nothing happens
        assert not sketches.take_family(s, FAMILY, "f2:second", stale_before=fresh)
        sketches.release_family(s, FAMILY, "f1:first")
    with sessions.begin() as s:
        assert sketches.take_family(s, FAMILY, "f2:second", stale_before=fresh)
    with sessions.begin() as s:  # the holder stopped: once its lease is older than the bound, it is taken over
        assert sketches.take_family(s, FAMILY, "f3:third", stale_before=utcnow() + timedelta(seconds=1))
    with sessions.begin() as s:
        assert not sketches.take_family(s, FAMILY, "f2:second", stale_before=fresh)


def test_a_later_attempt_at_the_same_file_takes_over_at_once_and_renewal_keeps_others_out(
    migrated_engine: Engine,
) -> None:
    sessions = session_factory(migrated_engine)
    fresh = utcnow() - timedelta(seconds=30)
    with sessions.begin() as s:
        assert sketches.take_family(s, FAMILY, "file1:attempt1", stale_before=fresh)
    with sessions.begin() as s:
        assert sketches.take_family(s, FAMILY, "file1:attempt2", stale_before=fresh)
    with sessions.begin() as s:
        sketches.renew_family(s, FAMILY, "file1:attempt2")
        # Renewed just now: not stale even for a bound a moment ago.
        assert not sketches.take_family(s, FAMILY, "file2:x", stale_before=utcnow() - timedelta(seconds=1))
