"""The catalog models on a migrated database (SQLite and PostgreSQL): round trips, constraints, deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, delete, func, inspect, select, text
from sqlalchemy.orm import Session

from storage.catalog.db import (
    is_unique_violation,
    make_engine,
    normalize_url,
    session_factory,
    session_scope,
    unique_conflicts,
)
from storage.catalog.models import (
    Account,
    Base,
    Commit,
    CommitAlias,
    DamagedFile,
    DamagedTensor,
    Family,
    FamilyIngest,
    FileObject,
    FileSegment,
    FileSketch,
    Frame,
    IngestJob,
    Membership,
    MetricCounter,
    MirrorClaim,
    MirrorRevision,
    Ref,
    RepoRedirect,
    Repository,
    StoreObject,
    Tensor,
    Token,
    TokenScope,
    TreeEntry,
    UploadGrant,
    XetDedupChunk,
    XetFile,
    XetXorb,
    XetXorbSpan,
)
from storage.core.errors import Conflict, InvalidInput

# Beyond 32 bits: sizes and offsets of real model files and packs.
BIG = 5 * 2**30 + 7
# Written in UTC+2 on purpose: it must come back as the same instant, in UTC.
WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
FILE = "f" * 64
BASE_FILE = "e" * 64
TENSOR = "a" * 64
BASE_TENSOR = "b" * 64
COMMIT = "c" * 40
PARENT = "d" * 40
PACK = "packs/00/pack-0001"


def one_of_each(session: Session) -> list[Base]:
    """One row in every table, linked the way ingest links them; flushed, not committed."""
    family = Family(fingerprint="9" * 64, name="llama-7b", root_sha256=BASE_FILE, created_at=WHEN)
    repo = Repository(namespace="org", name="model", private=True, created_at=WHEN)
    session.add_all([family, repo])
    session.flush()
    rows: list[Base] = [
        family,
        repo,
        StoreObject(key=PACK, size=BIG, kind="pack", created_at=WHEN),
        Tensor(
            id=BASE_TENSOR,
            dtype="BF16",
            shape=[4096, 4096],
            nbytes=2 * 4096 * 4096,
            created_at=WHEN,
        ),
        Tensor(
            id=TENSOR,
            dtype="BF16",
            shape=[4096, 4096],
            nbytes=2 * 4096 * 4096,
            base_tensor_id=BASE_TENSOR,
            chain_depth=1,
            created_at=WHEN,
        ),
        Frame(
            tensor_id=TENSOR,
            seq=0,
            raw_offset=0,
            raw_length=4 * 2**20,
            object_key=PACK,
            object_offset=BIG - 100,
            object_length=100,
            checksum=0xFFFFFFFF,
        ),
        FileObject(
            sha256=BASE_FILE,
            size=BIG,
            kind="safetensors",
            state="stored",
            family_id=family.id,
            fingerprint="9" * 64,
            created_at=WHEN,
            stored_at=WHEN,
        ),
        FileObject(
            sha256=FILE,
            size=BIG,
            kind="safetensors",
            state="staged",
            staging_key="staging/" + FILE,
            family_id=family.id,
            base_sha256=BASE_FILE,
            declared_base="org/base",
            fingerprint="9" * 64,
            error=None,
            created_at=WHEN,
        ),
        FileSegment(file_sha256=FILE, seq=0, offset=0, length=8, tensor_id=BASE_TENSOR, name="__header__"),
        FileSegment(
            file_sha256=FILE, seq=1, offset=BIG, length=2**25, tensor_id=TENSOR, name="lm_head.weight"
        ),
        Commit(
            oid=PARENT, repo_id=repo.id, message="initial commit", created_at=WHEN,
            git_author="deltahub <d@x> 1 +0000", git_committer="deltahub <d@x> 1 +0000",
        ),
        Commit(
            oid=COMMIT,
            repo_id=repo.id,
            parent_oid=PARENT,
            message="add weights\n\nbody",
            author="alice",
            created_at=WHEN,
            git_author="alice <a@x> 2 +0100",
            git_committer="deltahub <d@x> 2 +0000",
        ),
        Ref(repo_id=repo.id, name="main", commit_oid=COMMIT),
        RepoRedirect(repo_type="model", namespace="old", name="name", repository_id=repo.id, created_at=WHEN),
        CommitAlias(repo_id=repo.id, old_oid="9" * 40, oid=COMMIT),
        TreeEntry(repo_id=repo.id, commit_oid=COMMIT, path="model.safetensors", file_sha256=FILE, lfs=True,
                  git_oid="1" * 40),
        TreeEntry(repo_id=repo.id, commit_oid=PARENT, path="dir/base.safetensors", file_sha256=BASE_FILE, lfs=False,
                  git_oid="2" * 40),
        IngestJob(
            file_sha256=FILE,
            repo_id=repo.id,
            path="model.safetensors",
            state="running",
            attempts=2,
            created_at=WHEN,
            updated_at=WHEN,
        ),
        Account(id=1, name="alice", kind="user", hub_admin=True, disabled_at=None, quota_bytes=None, created_at=WHEN),
        Account(id=2, name="org", kind="org", hub_admin=False, disabled_at=WHEN, quota_bytes=BIG, created_at=WHEN),
        Membership(org_id=2, user_id=1, role="admin"),
        Token(
            id=1, name="ci", token_hash="0" * 64, user_id=1, can_write=True, fine_grained=True,
            created_at=WHEN, revoked_at=WHEN,
        ),
        TokenScope(id=1, token_id=1, namespace="org", name="model", can_write=False),
        XetXorb(
            hash="a" * 64, num_chunks=2, unpacked_bytes=BIG, chunk_table=bytes(72), raw_key=None, created_at=WHEN
        ),
        XetXorbSpan(xorb_hash="a" * 64, chunk_start=0, file_sha256=FILE, chunk_end=2, file_offset=BIG),
        XetDedupChunk(chunk_hash="b" * 64, xorb_hash="a" * 64, chunk_index=1),
        XetFile(file_hash="c" * 64, sha256=FILE, size=BIG, created_at=WHEN),
        MirrorRevision(repo_id=repo.id, revision="main", commit_oid=COMMIT, fetched_at=WHEN),
        MirrorClaim(key="sha256:" + FILE, owner="api-1", claimed_at=WHEN, sha256=FILE),
        DamagedFile(sha256=BASE_FILE, error="frame 0 of tensor … does not match its checksum", found_at=WHEN),
        DamagedTensor(tensor_id=BASE_TENSOR, error="frame 0 of tensor … does not match its checksum", found_at=WHEN),
        MetricCounter(name="ingest_job_duration_seconds_bucket", label="+Inf", value=float(BIG)),
        FileSketch(file_sha256=FILE, layout="d" * 64, sketch=bytes(6144)),
        FamilyIngest(fingerprint="e" * 64, owner="worker-1", taken_at=WHEN),
        UploadGrant(file_sha256=FILE, repo_id=repo.id, created_at=WHEN),
    ]
    for row in rows[2:]:
        session.add(row)
        session.flush()
    return rows


def columns(row: Base) -> dict[str, Any]:
    return {attr.key: getattr(row, attr.key) for attr in inspect(row).mapper.column_attrs}


def test_every_table_round_trips(migrated_engine: Engine) -> None:
    factory = session_factory(migrated_engine)
    with session_scope(factory) as session:
        written = one_of_each(session)
    assert {type(row).__table__.name for row in written} == set(Base.metadata.tables)
    with factory() as session:
        for row in written:
            stored = session.get(type(row), inspect(row).identity)
            assert stored is not None, row
            assert columns(stored) == columns(row)
        tensor = session.get(Tensor, TENSOR)
        assert tensor is not None
        assert tensor.shape == [4096, 4096]
        assert tensor.created_at.tzinfo is UTC
        assert tensor.created_at == WHEN
        frame = session.get(Frame, (TENSOR, 0))
        assert frame is not None
        assert (frame.object_offset, frame.checksum) == (BIG - 100, 0xFFFFFFFF)


def test_rows_update_and_delete(migrated_engine: Engine) -> None:
    factory = session_factory(migrated_engine)
    with session_scope(factory) as session:
        one_of_each(session)
    stored_at = datetime.now(UTC)
    with session_scope(factory) as session:
        file = session.get_one(FileObject, FILE)
        file.state, file.stored_at, file.staging_key = "stored", stored_at, None
        job = session.scalars(select(IngestJob)).one()
        job.state = "done"
    with session_scope(factory) as session:
        file = session.get_one(FileObject, FILE)
        assert (file.state, file.stored_at, file.staging_key) == ("stored", stored_at, None)
        job = session.scalars(select(IngestJob)).one()
        assert job.state == "done"
        assert job.updated_at > WHEN  # onupdate stamps the change
    # Children before parents: every table can be emptied, and ends empty.
    with session_scope(factory) as session:
        for table in reversed(Base.metadata.sorted_tables):
            # Delta-coded rows before their bases: RESTRICT is checked row by row, mid-statement.
            for base in ("base_sha256", "base_tensor_id"):
                if base in table.c:
                    session.execute(table.delete().where(table.c[base].is_not(None)))
            session.execute(table.delete())
    with factory() as session:
        for table in Base.metadata.sorted_tables:
            assert session.scalar(select(func.count()).select_from(table)) == 0, table.name


def test_same_repository_twice_is_a_conflict(catalog_session: Session) -> None:
    catalog_session.add(Repository(namespace="org", name="model"))
    catalog_session.commit()
    catalog_session.add(Repository(namespace="org", name="model"))
    with pytest.raises(sqlalchemy.exc.IntegrityError) as raised:
        catalog_session.flush()
    assert is_unique_violation(raised.value)
    catalog_session.rollback()
    catalog_session.add(Repository(namespace="org", name="model"))
    with pytest.raises(Conflict, match="org/model exists"), unique_conflicts("org/model exists"):
        catalog_session.flush()
    catalog_session.rollback()
    # Another name in the same namespace is fine.
    catalog_session.add(Repository(namespace="org", name="model-2"))
    catalog_session.commit()


def test_same_primary_key_twice_is_a_conflict(catalog_session: Session) -> None:
    catalog_session.add(StoreObject(key=PACK, size=1, kind="pack"))
    catalog_session.commit()
    catalog_session.add(StoreObject(key=PACK, size=1, kind="pack"))
    with pytest.raises(Conflict), unique_conflicts("object exists"):
        catalog_session.flush()


@pytest.mark.parametrize(
    "make_row",
    [
        lambda: FileObject(sha256=FILE, size=1, kind="safetensors", state="half-done"),
        lambda: FileObject(sha256=FILE, size=1, kind="", state="staged"),
        lambda: FileObject(sha256=FILE, size=-1, kind="blob", state="staged"),
        lambda: StoreObject(key=PACK, size=1, kind="tarball"),
        lambda: Tensor(
            id=TENSOR, dtype="F32", shape=[], nbytes=4, chain_depth=-1
        ),
    ],
    ids=["file-state", "file-kind", "file-size", "object-kind", "chain-depth"],
)
def test_check_constraints_refuse_bad_values(catalog_session: Session, make_row: Callable[[], Base]) -> None:
    catalog_session.add(make_row())
    with pytest.raises(sqlalchemy.exc.IntegrityError) as raised, unique_conflicts("never"):
        catalog_session.flush()
    assert not is_unique_violation(raised.value)


def test_job_state_is_checked(catalog_session: Session) -> None:
    catalog_session.add(FileObject(sha256=FILE, size=1, kind="blob", state="staged"))
    catalog_session.flush()
    catalog_session.add(IngestJob(file_sha256=FILE, state="paused"))
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        catalog_session.flush()


def test_foreign_keys_are_enforced(catalog_session: Session) -> None:
    catalog_session.add(FileSegment(file_sha256=FILE, seq=0, offset=0, length=1, tensor_id=TENSOR))
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        catalog_session.flush()


def test_deleting_a_commit_takes_its_tree_but_not_its_files(catalog_session: Session) -> None:
    one_of_each(catalog_session)
    catalog_session.execute(delete(Ref))
    catalog_session.execute(delete(Commit).where(Commit.oid == COMMIT))
    entries = catalog_session.scalars(select(TreeEntry.commit_oid)).all()
    assert entries == [PARENT]
    assert catalog_session.get(FileObject, FILE) is not None


def test_deleting_a_repository_takes_its_history(catalog_session: Session) -> None:
    one_of_each(catalog_session)
    catalog_session.execute(delete(Repository))
    for model in (Commit, Ref, TreeEntry):
        assert catalog_session.scalar(select(func.count()).select_from(model)) == 0, model
    job = catalog_session.scalars(select(IngestJob)).one()
    catalog_session.refresh(job)
    assert job.repo_id is None  # the job's history outlives the repository


@pytest.mark.parametrize(
    "statement",
    [
        delete(Tensor).where(Tensor.id == TENSOR),  # a file segment uses it
        delete(Tensor).where(Tensor.id == BASE_TENSOR),  # another tensor is delta-coded against it
        delete(StoreObject),  # a frame lives in it
        delete(FileObject).where(FileObject.sha256 == BASE_FILE),  # a tree and a delta refer to it
    ],
    ids=["tensor-in-file", "base-tensor", "pack-with-frames", "base-file"],
)
def test_shared_objects_are_deleted_only_when_unreferenced(catalog_session: Session, statement: Any) -> None:
    one_of_each(catalog_session)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        catalog_session.execute(statement)


def test_deleting_a_tensor_takes_its_frames(catalog_session: Session) -> None:
    one_of_each(catalog_session)
    catalog_session.execute(delete(FileSegment))
    catalog_session.execute(delete(Tensor).where(Tensor.id == TENSOR))
    assert catalog_session.scalar(select(func.count()).select_from(Frame)) == 0


def test_naive_datetimes_are_refused(catalog_session: Session) -> None:
    catalog_session.add(StoreObject(key=PACK, size=1, kind="pack", created_at=datetime(2024, 1, 1)))
    with pytest.raises(sqlalchemy.exc.StatementError, match="naive datetime"):
        catalog_session.flush()


def test_session_scope_commits_or_rolls_back(migrated_engine: Engine) -> None:
    factory = session_factory(migrated_engine)
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        session.add(StoreObject(key="lost", size=1, kind="frame"))
        session.flush()
        raise RuntimeError("abort")
    with session_scope(factory) as session:
        session.add(StoreObject(key="kept", size=1, kind="frame"))
    with factory() as session:
        assert session.scalars(select(StoreObject.key)).all() == ["kept"]


def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/nested/dir/catalog.sqlite3")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    finally:
        engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg3(scheme: str) -> None:
    url = normalize_url(f"{scheme}://user:p%40ss@db.example:5433/catalog")
    assert url.drivername == "postgresql+psycopg"
    assert (url.password, url.host, url.port, url.database) == ("p@ss", "db.example", 5433, "catalog")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "oracle://h/db"])
def test_unsupported_databases_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_url(url)


def test_an_unmigrated_or_unreachable_catalog_says_what_to_do(tmp_path: Path) -> None:
    from storage.core.errors import CatalogNotMigrated, CatalogUnavailable

    empty = session_factory(make_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    with pytest.raises(CatalogNotMigrated, match="run `deltahub admin migrate`"), session_scope(empty) as s:
        s.query(Repository).count()
    closed = session_factory(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test"))
    with pytest.raises(CatalogUnavailable, match="unreachable"), session_scope(closed) as s:
        s.query(Repository).count()


def test_stale_running_jobs_are_those_older_than_the_cutoff(catalog_session: Session) -> None:
    from storage.catalog.jobs import stale_running_jobs
    from storage.catalog.models import FileObject, IngestJob

    now = datetime.now(UTC)
    catalog_session.add(FileObject(sha256="a" * 64, size=1, kind="blob", state="staged"))
    catalog_session.flush()
    old = IngestJob(file_sha256="a" * 64, state="running", updated_at=now - timedelta(hours=2))
    fresh = IngestJob(file_sha256="a" * 64, state="running", updated_at=now)
    queued = IngestJob(file_sha256="a" * 64, state="queued", updated_at=now - timedelta(hours=2))
    catalog_session.add_all([old, fresh, queued])
    catalog_session.flush()
    assert stale_running_jobs(catalog_session, now - timedelta(hours=1)) == [old.id]
