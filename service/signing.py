"""Signed LFS upload URLs.

The client PUTs file bytes to the ``href`` the batch answer gave it, without its token (as it would to a
storage bucket). The URL therefore carries its own authorisation: an HMAC over the object id, its size,
an expiry time and the repository the upload is for ("model:alice/x"), made with a key only the
service knows. The repository is signed so that the upload, once its bytes are checked, grants that
repository's writers the right to commit the file (service/policy.py, may_name_file).
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

    def _mac(self, oid: str, size: int, expires: int, repo: str) -> str:
        # URLs signed before repositories were (repo ""), still valid until they expire, keep their message.
        message = f"{oid}:{size}:{expires}{':' + repo if repo else ''}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, oid: str, size: int, now: float, repo: str = "") -> tuple[int, str]:
        """(expires, signature) for an upload of `size` bytes hashing to `oid`, for repository `repo`."""
        expires = int(now) + self.ttl_seconds
        return expires, self._mac(oid, size, expires, repo)

    def check(self, oid: str, size: int, expires: int, signature: str, now: float, repo: str = "") -> None:
        if not hmac.compare_digest(self._mac(oid, size, expires, repo), signature):
            raise Forbidden(detail="upload URL signature does not match")
        if now > expires:
            raise Forbidden(detail="upload URL expired: ask the batch endpoint for a new one")
