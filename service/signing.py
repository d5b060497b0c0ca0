"""Signed LFS upload URLs.

The client PUTs file bytes to the ``href`` the batch answer gave it, without its token (as it would to a
storage bucket). The URL therefore carries its own authorisation: an HMAC over the object id, its size
and an expiry time, made with a key only the service knows.
"""

from __future__ import annotations

import hashlib
import hmac

from service.errors import Forbidden


class UploadSigner:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        if len(key) < 16:
            raise ValueError("the upload signing key must be at least 16 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds

    def _mac(self, oid: str, size: int, expires: int) -> str:
        message = f"{oid}:{size}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, oid: str, size: int, now: float) -> tuple[int, str]:
        """(expires, signature) for an upload of `size` bytes hashing to `oid`."""
        expires = int(now) + self.ttl_seconds
        return expires, self._mac(oid, size, expires)

    def check(self, oid: str, size: int, expires: int, signature: str, now: float) -> None:
        if not hmac.compare_digest(self._mac(oid, size, expires), signature):
            raise Forbidden(detail="upload URL signature does not match")
        if now > expires:
            raise Forbidden(detail="upload URL expired: ask the batch endpoint for a new one")
