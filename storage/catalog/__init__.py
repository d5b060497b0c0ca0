"""The SQL catalog: the only package that imports SQLAlchemy.

``models`` holds the tables, ``db`` the engines, sessions and migrations. Import from the submodules;
this package imports nothing itself so that ``import storage.catalog.models`` stays cheap.
"""
