"""Database fixtures (SQLite and the PostgreSQL at 127.0.0.1:5432).

``database_url`` runs a test once on a SQLite file in ``tmp_path`` and once on a fresh PostgreSQL
database created for that test alone (dropped afterwards), so tests can run concurrently and leave
nothing behind. The server is ``DELTAHUB_TEST_PG_URL`` (default: user ``postgres``, trust auth,
database ``test``, used only to create and drop the per-test databases). When it cannot be reached,
the PostgreSQL runs fail under CI and are skipped, with the reason, on a developer's machine.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from storage.catalog.db import make_engine, session_factory, upgrade

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _libpq_dsn(url: URL) -> str:
    """The URL as psycopg itself takes it (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> URL:
    """The PostgreSQL server under test, checked once per session."""
    url = make_url(os.environ.get("DELTAHUB_TEST_PG_URL", DEFAULT_PG_URL))
    try:
        with psycopg.connect(_libpq_dsn(url), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = f"PostgreSQL at {url.render_as_string()} is unreachable ({exc}); set DELTAHUB_TEST_PG_URL"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def pg_database_url(pg_admin_url: URL) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped (with its connections) afterwards."""
    name = f"dh_{secrets.token_hex(8)}"
    with psycopg.connect(_libpq_dsn(pg_admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_admin_url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(_libpq_dsn(pg_admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty catalog database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.sqlite3'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` after every migration has run."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def catalog_session(migrated_engine: Engine) -> Iterator[Session]:
    """A session on a migrated catalog; the test commits what it wants kept."""
    session = session_factory(migrated_engine)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
