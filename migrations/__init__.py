"""Alembic migrations of the catalog; run them with ``storage.catalog.db.upgrade(url)``."""
