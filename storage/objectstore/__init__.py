"""Object stores: one interface, a local-directory backend and an S3 backend.

`S3ObjectStore` is imported lazily so that the embedded mode never loads boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.objectstore.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    validate_key,
    validate_prefix,
)
from storage.objectstore.factory import open_store
from storage.objectstore.local import LocalObjectStore

if TYPE_CHECKING:
    from storage.objectstore.s3 import S3ObjectStore

__all__ = [
    "InvalidKey",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "open_store",
    "validate_key",
    "validate_prefix",
]


def __getattr__(name: str) -> Any:
    if name == "S3ObjectStore":
        from storage.objectstore.s3 import S3ObjectStore

        return S3ObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
