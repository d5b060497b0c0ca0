"""The one typed settings object shared by the API, the workers and the CLI.

Every field is read from an environment variable named ``DELTAHUB_<FIELD>`` (``DELTAHUB_DATA_DIR``,
``DELTAHUB_STORE_BACKEND``, ...); keyword overrides passed to :func:`load_settings` win over the
environment. Nothing is read at import time: callers build the object once and pass it down.

The defaults give the embedded mode (SQLite catalog, local-directory store, in-process worker) so that
``deltahub serve`` works with zero services. ``environment=production`` refuses the defaults that are
only safe on a developer's machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.core.errors import InvalidInput

MiB = 1024 * 1024
GiB = 1024 * MiB


class InvalidSettings(InvalidInput):
    """invalid settings: {detail}"""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DELTAHUB_",
        # An empty variable (``DELTAHUB_DATABASE_URL=``) means "not set", not "the empty string".
        env_ignore_empty=True,
        extra="forbid",
        validate_default=True,
    )

    environment: Literal["development", "production"] = "development"

    data_dir: Path = Path("deltahub-data")
    # None: a SQLite file inside data_dir (embedded mode).
    database_url: str | None = None

    store_backend: Literal["local", "s3"] = "local"
    # None: data_dir/objects.
    store_dir: Path | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    # None: ingest runs in an in-process worker (embedded mode); else a Celery broker URL.
    broker_url: str | None = None

    # Signs LFS upload URLs (the client PUTs without its token); every API replica must share it.
    # None: a random key per process, which only fits a single process (embedded mode).
    secret_key: SecretStr | None = None
    # The URL clients reach the service at, behind a proxy; None: the Host header of each request.
    public_url: str | None = None
    # False: public repositories are read only with a token too (a closed company hub); anonymous
    # callers get 401 on every read. Private repositories always need a token with access to them.
    anonymous_read: bool = True

    # The safetensors reference parser refuses headers above 100 MB (its MAX_HEADER_SIZE); a header that
    # big is already ~1M tensors, so anything larger is refused before it is read into memory.
    max_header_bytes: int = Field(default=100_000_000, gt=0)
    # Tensors one file may list (storage/core/formats/base.py MAX_TENSORS has the measurement): a
    # 1,000,000-tensor header took 11.8 s and 872 MB to parse; 100,000 takes 1.1 s and 105 MB.
    max_header_tensors: int = Field(default=100_000, gt=0)
    # The Hugging Face Hub accepts files up to 50 GB; a hub-compatible server accepts what the hub does.
    max_upload_bytes: int = Field(default=50 * 1000**3, gt=0)
    # A git push's pack is read whole and unpacked in memory (storage/app/git_http.py): files over 10 MB
    # travel by git-lfs, as on the Hub, so a pack of configs and tokenizers is a few MB; this stops abuse.
    git_max_pack_bytes: int = Field(default=128 * MiB, gt=0)
    # What that pack may unpack into (storage/core/gitpack.py): zlib inflates ~1,000x and a delta names the
    # size it rebuilds, so the compressed bound alone lets 128 MiB claim terabytes of memory.
    git_max_unpacked_bytes: int = Field(default=512 * MiB, gt=0)
    # Frames are the unit of ranged reads and parallel decode: 4 MiB bounds a Range read's wasted decode
    # to two partial frames, while one ~100-byte catalog row per frame stays under 0.003% of the data.
    frame_bytes: int = Field(default=4 * MiB, gt=0)
    # Small frames are packed into store objects of about this size: S3 bills per request and listing
    # slows with object count, while 64 MiB is still one cheap PUT and a fast ranged GET.
    pack_target_bytes: int = Field(default=64 * MiB, gt=0)
    # A read of a delta-coded tensor decodes every base down its chain: depth 4 bounds the read
    # amplification to 5 frames per frame served, while fine-tune-of-fine-tune lineages rarely go deeper.
    max_chain_depth: int = Field(default=4, ge=0)
    # An object is collected only if unreferenced for this long: longer than an ingest job takes from
    # writing its first object to committing its catalog rows, so GC never races a running ingest.
    gc_grace_seconds: int = Field(default=3600, ge=0)
    # Hot files (storage/app/hotfiles.py): whole verified copies of often-read stored files on the API
    # process's disk, served without decoding (a 1 MiB range of a 1 GB file: README "Reads against static
    # servers"). The budget is the most the copies may take; 0 switches the cache off. A file is copied on
    # its `hot_cache_reads`-th whole read, so a file read once (one download) costs no disk.
    hot_cache_bytes: int = Field(default=2 * GiB, ge=0)
    hot_cache_reads: int = Field(default=2, gt=0)
    # None: data_dir/hot. Local to each API process, whatever the object store (local or S3).
    hot_cache_dir: Path | None = None
    # The reference machines have 2 cores; ingest is CPU-bound (hashing, coding), one worker per core.
    ingest_workers: int = Field(default=2, gt=0)

    # Pull-through mirror (storage/app/mirror.py): a repository or revision not held here is fetched from
    # this Hub API endpoint (the public Hub, another deltahub), stored like a push, then served locally.
    # None: no mirror.
    mirror_upstream: str | None = None
    # Sent to the upstream as a bearer token: private upstream repositories it may read are mirrored,
    # and stay private here.
    mirror_upstream_token: SecretStr | None = None
    # Comma-separated globs over "namespace/name" ("org/*", "org/bert-*", "*"); deny wins over allow.
    mirror_allow: str = "*"
    mirror_deny: str = ""
    # A branch is re-resolved against the upstream once its last look is older than this; commit ids
    # and tags never are. 300 s: the Hub's own CDN keeps a resolved revision about as long.
    mirror_branch_ttl_seconds: float = Field(default=300.0, ge=0)
    # One upstream request (connect or a read between bytes) gives up after this long.
    mirror_timeout_seconds: float = Field(default=30.0, gt=0)
    # An interrupted transfer is resumed (HTTP Range) for up to this long before the request fails.
    mirror_resume_seconds: float = Field(default=60.0, ge=0)
    # A fetch claimed by a process that stopped heartbeating for this long is taken over by another.
    mirror_claim_seconds: float = Field(default=120.0, gt=0)

    # "json": one JSON object per log line (request id, caller, repository, route, status, duration),
    # for log shippers; "text": plain lines for people at a terminal.
    log_format: Literal["text", "json"] = "text"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)

    @property
    def embedded(self) -> bool:
        """Embedded mode: no broker, so ingest runs on a thread pool inside the serving process."""
        return self.broker_url is None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalog.sqlite3').as_posix()}"

    @property
    def mirror_allow_patterns(self) -> tuple[str, ...]:
        return _patterns(self.mirror_allow)

    @property
    def mirror_deny_patterns(self) -> tuple[str, ...]:
        return _patterns(self.mirror_deny)

    @property
    def resolved_store_dir(self) -> Path:
        return self.store_dir if self.store_dir is not None else self.data_dir / "objects"

    @property
    def resolved_hot_cache_dir(self) -> Path:
        return self.hot_cache_dir if self.hot_cache_dir is not None else self.data_dir / "hot"

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.store_backend == "s3" and not self.s3_bucket:
            raise ValueError("store_backend 's3' needs s3_bucket")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both s3_access_key_id and s3_secret_access_key, or neither")
        if self.environment == "production":
            self._refuse_development_defaults()
        return self

    def _refuse_development_defaults(self) -> None:
        """Production serves many processes on many machines; these defaults only fit one laptop."""
        scheme = self.resolved_database_url.split(":", 1)[0].split("+", 1)[0]
        if scheme == "sqlite":
            # One writer at a time and a file on one machine's disk: API replicas and workers elsewhere
            # would each see a different catalog.
            raise ValueError("production needs a PostgreSQL database_url, not SQLite")
        if self.secret_key is None:
            # Each replica would sign upload URLs with its own random key and refuse the others'.
            raise ValueError("production needs secret_key (shared by every API replica)")
        if self.store_backend == "s3" and self.s3_access_key_id is None:
            raise ValueError("production with store_backend 's3' needs s3_access_key_id/s3_secret_access_key")
        if self.store_backend == "local" and not self.resolved_store_dir.is_absolute():
            # A relative path resolves against each process's working directory: the API and a worker
            # started from different directories would write to different stores.
            raise ValueError("production with store_backend 'local' needs an absolute store_dir or data_dir")


def _patterns(listed: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in listed.split(",") if p.strip())


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from ``DELTAHUB_*`` environment variables; ``overrides`` win over them."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidSettings(detail=problems) from exc
