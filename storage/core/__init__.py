"""The pure core: file formats, codecs, frames, packs, families, casts and the error hierarchy.

Bytes and arrays in, bytes and arrays out. Nothing here imports the catalog, an object store, the
settings, HTTP or Celery code (an import-linter contract in pyproject.toml enforces it).
"""
