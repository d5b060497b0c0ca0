"""Alembic environment for the catalog.

``storage.catalog.db.upgrade``/``downgrade`` hand over an open connection in
``config.attributes["connection"]``. Without one (the ``alembic`` command line, e.g. to autogenerate a
new revision), the URL comes from the ``sqlalchemy.url`` option or else from the deltahub settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.catalog.db import migration_connection
from storage.catalog.models import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        from storage.settings import load_settings

        url = load_settings().resolved_database_url
    with migration_connection(url) as connection:
        run_on(connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_online()
