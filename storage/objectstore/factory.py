"""The object store the settings name: a local directory (embedded) or an S3 bucket."""

from __future__ import annotations

from typing import Any

from storage.objectstore.base import ObjectStore
from storage.settings import Settings


def open_store(settings: Settings, **s3_options: Any) -> ObjectStore:
    """`s3_options` pass on to the S3 client (timeouts, attempts), for callers that need them tighter."""
    if settings.store_backend == "s3":
        from storage.objectstore.s3 import S3ObjectStore

        secret = settings.s3_secret_access_key
        return S3ObjectStore(
            settings.s3_bucket or "",
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            **s3_options,
        )
    from storage.objectstore.local import LocalObjectStore

    return LocalObjectStore(settings.resolved_store_dir)
