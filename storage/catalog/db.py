"""Engines, sessions and schema migrations for the catalog.

SQLite (embedded mode) and PostgreSQL through psycopg 3 (distributed mode) are the two supported
databases; everything else about them is hidden here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.core import errors
from storage.core.errors import Conflict, InvalidInput

# How long a SQLite writer waits for another writer's lock before failing: ingest transactions commit
# a file's rows at once, so waits are short, but the API and the in-process worker do contend.
SQLITE_BUSY_TIMEOUT_MS = 30_000

T = TypeVar("T")

# Ids per `IN (...)` query when a statement names many rows: SQLite before 3.32 refuses more than 999
# bound parameters in one statement, and 500 leaves room for the statement's other parameters.
IN_BATCH = 500


def batches(items: Sequence[T], size: int = IN_BATCH) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`, for queries that name rows by id."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# The drivers the catalog is tested with; others may parse but behave differently.
_SUPPORTED_DRIVERS = {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}

# SQLite's extended result codes for a violated UNIQUE or PRIMARY KEY constraint.
_SQLITE_UNIQUE_CODES = {2067, 1555}
# PostgreSQL's SQLSTATE for unique_violation (primary keys included).
_PG_UNIQUE_VIOLATION = "23505"


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` (and ``postgres://``) means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in _SUPPORTED_DRIVERS:
        raise InvalidInput(
            detail=f"unsupported database driver {parsed.drivername!r}: use sqlite:/// or postgresql://"
        )
    return parsed


def make_engine(url: str) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Connections outlive PostgreSQL restarts and idle timeouts in proxies: test before use.
        return create_engine(parsed, pool_pre_ping=True)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        _create_private(Path(database))
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def _create_private(database: Path) -> None:
    """The SQLite file, readable by this user only; SQLite gives its -wal and -shm files the same mode.
    A folder we create for it is private too (the embedded data directory)."""
    if not database.parent.exists():
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Off by default in SQLite; the catalog's ON DELETE rules depend on it.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers (downloads) proceed while a writer (ingest) commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: callers return them to routes after the transaction ends.
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as exc:
        with suppress(sqlalchemy.exc.DBAPIError):  # the connection is gone; the error below says so
            session.rollback()
        _raise_catalog_error(exc)
        raise
    finally:
        session.close()


def _raise_catalog_error(exc: BaseException) -> None:
    """Driver errors leave the catalog as deltahub errors that say what to do."""
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.ProgrammingError):
        text_ = str(exc.orig) if getattr(exc, "orig", None) is not None else str(exc)
        if "no such table" in text_ or ("relation" in text_ and "does not exist" in text_):
            raise errors.CatalogNotMigrated(detail=text_.splitlines()[0]) from exc
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            raise errors.CatalogUnavailable(detail=text_.splitlines()[0]) from exc


def is_unique_violation(exc: BaseException) -> bool:
    """True if ``exc`` is a database error for a violated UNIQUE or PRIMARY KEY constraint."""
    if not isinstance(exc, sqlalchemy.exc.IntegrityError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION:
        return True
    return getattr(orig, "sqlite_errorcode", None) in _SQLITE_UNIQUE_CODES


@contextmanager
def unique_conflicts(detail: str) -> Iterator[None]:
    """Turn a unique violation raised inside the block into ``Conflict(detail)``; others pass through."""
    try:
        yield
    except sqlalchemy.exc.IntegrityError as exc:
        if is_unique_violation(exc):
            raise Conflict(detail=detail) from exc
        raise


def alembic_config(url: str | None = None) -> Any:
    """An Alembic ``Config`` for ``migrations/`` (no alembic.ini needed).

    With ``url``, env.py opens its own engine on it; this is the way to run other Alembic commands,
    e.g. ``command.revision(alembic_config(url), message="...", autogenerate=True)``.
    """
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if url is not None:
        # The option is read through configparser, which treats "%" (URL-escaped passwords) as syntax.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def migration_connection(url: str) -> Iterator[Connection]:
    """A connection to run migrations on, in one transaction committed when the block ends."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch migrations rebuild SQLite tables (copy, drop, rename); with foreign keys on,
                # dropping the old table would fire ON DELETE CASCADE on the rows that reference it.
                # The pragma is a no-op inside a transaction, so it goes first.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
                    if broken:
                        detail = f"migration left dangling foreign keys: {broken[:5]}"
                        raise errors.IntegrityError(detail=detail)
    finally:
        engine.dispose()


def _migrate(url: str, step: str, revision: str) -> None:
    from alembic import command

    with migration_connection(url) as connection:
        config = alembic_config()
        # env.py runs on this connection instead of opening its own.
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the catalog at ``url`` up to ``revision`` (creating it from nothing if empty)."""
    _migrate(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    """Take the catalog at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    _migrate(url, "downgrade", revision)
