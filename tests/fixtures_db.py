"""Database fixtures (SQLite and the PostgreSQL at 127.0.0.1:5432)."""
