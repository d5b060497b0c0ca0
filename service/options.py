"""The service's own tunables, read from the shared settings object.

Fields the settings object does not define yet fall back to the defaults below, so the service runs
with any settings version; tests override them (a small tree page size) through ``replace``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    # The URL clients reach this service at (behind a proxy); None: the Host the request came to.
    public_url: str | None = None
    # The Hugging Face Hub pages trees by 1000 entries; clients follow the Link header whatever the size.
    tree_page_size: int = 1000
    commits_page_size: int = 100
    # list_models / list_datasets pages (the Hub's own default page is 1000 repositories).
    listing_page_size: int = 1000
    # Files up to this size travel inline (base64) in the commit request: one round trip instead of three
    # (batch, PUT, verify). Larger files go through the LFS routes, which dedup before the transfer.
    regular_file_max_bytes: int = 1 * MiB
    # A commit body holds at most a few hundred inline files; the bound only stops abuse.
    max_commit_bytes: int = 1 * GiB
    max_upload_bytes: int = 50 * 1000**3
    # Every other body is JSON read whole: a preupload of 10,000 files is ~2 MB, so 16 MiB only stops abuse.
    max_json_bytes: int = 16 * MiB
    # A git push's pack is read whole and unpacked in memory: files over 10 MB must travel by git-lfs
    # (as on the Hub), so a pack of configs, tokenizers and cards is a few MB; 128 MiB only stops abuse.
    git_max_pack_bytes: int = 128 * MiB
    # ... and what its objects may unpack into (zlib inflates ~1,000x; deltas name the size they rebuild).
    git_max_unpacked_bytes: int = 512 * MiB
    # A signed upload URL outlives the slowest single PUT of a 50 GB file at ~15 MB/s.
    upload_url_ttl_seconds: int = 3600
    # Uploads run on their own threads, never the pool that serves reads: stalled bodies cannot starve
    # downloads or the API. 16 keeps a 2-core machine busy with streaming uploads (each is I/O-bound).
    upload_threads: int = 16
    # Concurrent uploads from one client address; beyond it a 429 (the client retries with backoff).
    uploads_per_client: int = 8
    # A body that sends nothing for this long, or averages less than the rate below once this long has
    # passed, is cut with 408: a client on a 1 Mbit/s link still sends 125 kB/s.
    upload_stall_seconds: float = 30.0
    upload_min_bytes_per_second: int = 32 * 1024
    # Public repositories readable without a token (DELTAHUB_ANONYMOUS_READ, service/policy.py).
    anonymous_read: bool = True
    # Signs LFS upload URLs (the client PUTs to them without its token). Replicas must share it.
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def max_commit_line_bytes(self) -> int:
        """One ndjson line: an inline file in base64 (4/3 of its size) plus its JSON envelope."""
        return self.regular_file_max_bytes * 4 // 3 + 64 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> ServiceOptions:
        def pick(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None else value

        defaults = cls()
        secret = pick("secret_key", None)
        if secret is None:
            log.warning("no secret_key in settings: upload URLs are signed with a per-process key")
            key = defaults.signing_key
        else:
            raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
            key = raw.encode() if isinstance(raw, str) else bytes(raw)
        return cls(
            public_url=pick("public_url", None),
            tree_page_size=pick("tree_page_size", defaults.tree_page_size),
            commits_page_size=pick("commits_page_size", defaults.commits_page_size),
            listing_page_size=pick("listing_page_size", defaults.listing_page_size),
            regular_file_max_bytes=pick("regular_file_max_bytes", defaults.regular_file_max_bytes),
            max_commit_bytes=pick("max_commit_bytes", defaults.max_commit_bytes),
            max_upload_bytes=pick("max_upload_bytes", defaults.max_upload_bytes),
            git_max_pack_bytes=pick("git_max_pack_bytes", defaults.git_max_pack_bytes),
            git_max_unpacked_bytes=pick("git_max_unpacked_bytes", defaults.git_max_unpacked_bytes),
            upload_url_ttl_seconds=pick("upload_url_ttl_seconds", defaults.upload_url_ttl_seconds),
            upload_threads=pick("upload_threads", defaults.upload_threads),
            uploads_per_client=pick("uploads_per_client", defaults.uploads_per_client),
            upload_stall_seconds=pick("upload_stall_seconds", defaults.upload_stall_seconds),
            anonymous_read=bool(pick("anonymous_read", defaults.anonymous_read)),
            signing_key=key,
        )
