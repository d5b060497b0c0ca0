"""Short-lived CAS access tokens for Xet clients.

The Hub's ``xet-write-token`` route hands the client a token for the CAS routes, and the client sends it
there instead of its own: it names one repository (its type and id: a model and a dataset may share an
id), one revision and a scope (read or write), expires soon, and is an HMAC made with the service's
signing key, so any replica checks it without a lookup. The MAC input starts with a label of its own,
so no LFS upload signature can pass for a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

from service.errors import Forbidden, Unauthorized

Scope = Literal["read", "write"]
# The client asks for a new token a minute before expiry; a quarter hour bounds how long a revoked user
# token's last CAS token keeps working.
CAS_TOKEN_TTL_SECONDS = 900
_PREFIX = "xet1"
_LABEL = b"deltahub xet cas token v1\0"


@dataclass(frozen=True, slots=True)
class CasGrant:
    repo_type: str
    repo_id: str
    revision: str
    scope: Scope
    expires: int


class CasTokenSigner:
    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        if len(key) < 16:
            raise ValueError("the token signing key must be at least 16 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, _LABEL + payload, hashlib.sha256).hexdigest()

    def issue(self, repo_type: str, repo_id: str, revision: str, scope: Scope, now: float) -> tuple[str, int]:
        """(token, expiry as a unix time)."""
        expires = int(now) + self.ttl_seconds
        claims = {"t": repo_type, "r": repo_id, "v": revision, "s": scope, "e": expires}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{_PREFIX}.{encoded}.{self._mac(payload)}", expires

    def check(self, token: str | None, repo_type: str, repo_id: str, scope: Scope, now: float) -> CasGrant:
        """The grant a token carries if it is ours, unexpired, for this repository (type and id) and wide
        enough for `scope`."""
        if not token:
            raise Unauthorized(detail="the CAS needs a Xet access token (from the xet-write-token route)")
        grant = self._open(token)
        if now > grant.expires:
            raise Unauthorized(detail="Xet access token expired: ask the xet token route for a new one")
        if (grant.repo_type, grant.repo_id) != (repo_type, repo_id):
            raise Forbidden(
                detail=f"this Xet access token is for the {grant.repo_type} repository {grant.repo_id!r}, "
                f"not the {repo_type} {repo_id!r}"
            )
        if scope == "write" and grant.scope != "write":
            raise Forbidden(detail="this Xet access token is read-only; uploads need a write token")
        return grant

    def _open(self, token: str) -> CasGrant:
        prefix, _, rest = token.partition(".")
        encoded, _, mac = rest.partition(".")
        invalid = Unauthorized(detail="invalid Xet access token")
        if prefix != _PREFIX or not encoded or not mac:
            raise invalid
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(self._mac(payload), mac):
            raise invalid
        claims = json.loads(payload)
        if "t" not in claims:  # made before tokens named the repository type
            raise invalid
        return CasGrant(claims["t"], claims["r"], claims["v"], claims["s"], int(claims["e"]))
