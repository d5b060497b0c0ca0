"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from storage.catalog.db import alembic_config, downgrade, make_engine, upgrade
from storage.catalog.models import Base


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def model_constraint_names() -> set[str]:
    names: set[str] = set()
    for table in Base.metadata.tables.values():
        names.update(str(constraint.name) for constraint in table.constraints)
        names.update(str(index.name) for index in table.indexes)
    return names


def reflected_constraint_names(engine: Engine) -> set[str]:
    inspector = inspect(engine)
    names: set[str] = set()
    for table in Base.metadata.tables:
        names.add(inspector.get_pk_constraint(table)["name"])
        names.update(fk["name"] for fk in inspector.get_foreign_keys(table))
        names.update(uq["name"] for uq in inspector.get_unique_constraints(table))
        names.update(ck["name"] for ck in inspector.get_check_constraints(table))
        names.update(
            ix["name"] for ix in inspector.get_indexes(table) if "duplicates_constraint" not in ix
        )
    return names


def test_upgrade_from_empty_builds_the_models_schema(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
        assert schema_differences(engine) == []
        # Later migrations drop and alter constraints by name: the names must be the same on both.
        assert reflected_constraint_names(engine) == model_constraint_names()
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert head is not None and MigrationContext.configure(connection).get_current_revision() == head
    finally:
        engine.dispose()


def test_downgrade_to_base_drops_every_table_and_upgrade_rebuilds(database_url: str) -> None:
    upgrade(database_url)
    downgrade(database_url, "base")
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() is None
        upgrade(database_url)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_alembic_commands_run_on_a_url_alone(database_url: str) -> None:
    """The path a developer takes to check the models or autogenerate the next revision."""
    config = alembic_config(database_url)
    command.upgrade(config, "head")
    command.check(config)  # raises if the models need a migration that does not exist yet
    command.downgrade(config, "base")
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_0010_damage_adds_empty_damage_tables_that_follow_their_files(database_url: str) -> None:
    """On a catalog holding a file: nothing is damaged after the upgrade; a damage record goes with its
    file (CASCADE, as GC deletes files in bulk); the downgrade drops only the damage tables."""
    upgrade(database_url, "0009_mirror")
    engine = make_engine(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        with engine.begin() as c:
            c.execute(text("INSERT INTO file_objects (sha256, size, kind, state, created_at) "
                           "VALUES (:s, 3, 'blob', 'stored', :t)"), {"s": "e" * 64, "t": now})
        upgrade(database_url)
        with engine.begin() as c:
            assert c.execute(text("SELECT count(*) FROM damaged_files")).scalar() == 0
            c.execute(text("INSERT INTO damaged_files (sha256, error, found_at) VALUES (:s, 'x', :t)"),
                      {"s": "e" * 64, "t": now})
        with engine.begin() as c:
            c.execute(text("DELETE FROM file_objects"))
            assert c.execute(text("SELECT count(*) FROM damaged_files")).scalar() == 0
        downgrade(database_url, "0009_mirror")
        tables = set(inspect(engine).get_table_names())
        assert "file_objects" in tables and not {"damaged_files", "damaged_tensors"} & tables
    finally:
        engine.dispose()
