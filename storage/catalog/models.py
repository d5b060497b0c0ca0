"""The SQL catalog: what is stored where, portable across SQLite and PostgreSQL.

Portability rules: byte sizes and offsets are BIGINT (files and packs exceed 2 GiB); enumerations are
short strings with CHECK constraints (no native ENUM types to migrate); shapes and codec configs are
JSON; times are timezone-aware UTC; every constraint has a name from ``NAMING_CONVENTION`` so a
migration can drop or alter it by name on both databases.

Deletion rules: rows that belong to one owner go with it (a commit's tree entries and refs' repository,
a file's segments, a tensor's frames: CASCADE). Shared, content-addressed things (file objects, tensors,
store objects) are deleted only by GC, so anything referencing them is RESTRICT: a delete that would
orphan a reference fails instead of silently losing data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases.

    SQLite has no time zones: values are normalised to UTC before they are written and tagged as UTC
    when read, so the same comparison works on either database.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the catalog stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class RepoType(StrEnum):
    """What a repository holds; a model and a dataset may share a name, as on the Hub."""

    MODEL = "model"
    DATASET = "dataset"


class RefKind(StrEnum):
    BRANCH = "branch"
    TAG = "tag"


class FileState(StrEnum):
    STAGED = "staged"
    STORED = "stored"
    FAILED = "failed"


class StoreObjectKind(StrEnum):
    PACK = "pack"
    FRAME = "frame"
    STAGING = "staging"


class AccountKind(StrEnum):
    USER = "user"
    ORG = "org"


class Role(StrEnum):
    """An organization member's role, as on the Hub: read < write < admin."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def one_of(column: str, values: type[StrEnum], name: str) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def sha256_column(*args: Any, **kwargs: Any) -> Mapped[Any]:
    return mapped_column(CHAR(64), *args, **kwargs)


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("repo_type", "namespace", "name"), one_of("repo_type", RepoType, "repo_type"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_type: Mapped[str] = mapped_column(String(16), default=RepoType.MODEL)
    namespace: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RepoRedirect(Base):
    """A name a repository was moved away from (move_repo): requests naming it are redirected to the
    repository's current name, as on the Hub, until a repository of that type takes the name again."""

    __tablename__ = "repo_redirects"
    __table_args__ = (one_of("repo_type", RepoType, "repo_type"),)

    repo_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(96), primary_key=True)
    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    # Names the repository, not its new name: a second move redirects every older name at once.
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Commit(Base):
    """A commit of one repository. Its id is a git id, so the same commit (a clone of A pushed into B, two
    mirrors of one upstream) may be held by many repositories: each holds its own row, keyed by (repo_id,
    oid), and everything naming a commit names it with its repository, so no history leaks into another."""

    __tablename__ = "commits"
    __table_args__ = (
        # NO ACTION: a commit with children cannot be deleted alone, but a whole history can (one statement).
        ForeignKeyConstraint(["repo_id", "parent_oid"], ["commits.repo_id", "commits.oid"]),
    )

    repo_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    oid: Mapped[str] = mapped_column(CHAR(40), primary_key=True)
    parent_oid: Mapped[str | None] = mapped_column(CHAR(40))
    message: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The git author and committer lines ("Name <email> <epoch> <+hhmm>"): with the tree, the parent
    # and the message they rebuild the git commit object whose SHA-1 is `oid` (storage/core/gitobjects.py).
    git_author: Mapped[str] = mapped_column(Text)
    git_committer: Mapped[str] = mapped_column(Text)


class CommitAlias(Base):
    """A commit id from before commit ids were git ids (0008_git): a revision pinned by it still resolves."""

    __tablename__ = "commit_aliases"
    __table_args__ = (
        ForeignKeyConstraint(["repo_id", "oid"], ["commits.repo_id", "commits.oid"], ondelete="CASCADE"),
        Index("ix_commit_aliases_repo_id_oid", "repo_id", "oid"),
    )

    repo_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    old_oid: Mapped[str] = mapped_column(CHAR(40), primary_key=True)
    oid: Mapped[str] = mapped_column(CHAR(40))


class Ref(Base):
    """A branch or a tag: its name points at one commit of its repository.

    Branches move with each commit; tags never move. A tag and a branch cannot share a name (one
    primary key), so a revision name means one thing.
    """

    __tablename__ = "refs"
    __table_args__ = (
        one_of("kind", RefKind, "kind"),
        # NO ACTION, not RESTRICT: deleting a repository removes its refs and commits in one statement.
        # The commit is one of the ref's own repository: the key says so.
        ForeignKeyConstraint(["repo_id", "commit_oid"], ["commits.repo_id", "commits.oid"]),
    )

    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_oid: Mapped[str] = mapped_column(CHAR(40))
    kind: Mapped[str] = mapped_column(String(16), default=RefKind.BRANCH)
    # A tag's annotation (create_tag(tag_message=...)); None for branches.
    message: Mapped[str | None] = mapped_column(Text)


class TreeEntry(Base):
    """Each commit stores its full tree: listing a revision is one indexed query (the key's prefix), no
    history walk."""

    __tablename__ = "tree_entries"
    __table_args__ = (
        ForeignKeyConstraint(["repo_id", "commit_oid"], ["commits.repo_id", "commits.oid"], ondelete="CASCADE"),
    )

    repo_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    commit_oid: Mapped[str] = mapped_column(CHAR(40), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    # Indexed: GC asks "does any tree still reference this file?".
    file_sha256: Mapped[str] = mapped_column(
        ForeignKey("file_objects.sha256", ondelete="RESTRICT"), index=True
    )
    # How git holds the file: an LFS pointer (true) or a blob of its bytes, and that blob's git id.
    lfs: Mapped[bool] = mapped_column(Boolean, default=True)
    git_oid: Mapped[str] = mapped_column(CHAR(40))


class FileObject(Base):
    """A whole file, addressed by the sha256 of its bytes (the hub's LFS oid)."""

    __tablename__ = "file_objects"
    __table_args__ = (
        # The id of the format that parsed the file (storage/core/formats/registry.py): any registered
        # id, so a new format needs no migration.
        CheckConstraint("kind <> ''", name="kind"),
        one_of("state", FileState, "state"),
        CheckConstraint("size >= 0", name="size_nonnegative"),
    )

    sha256: Mapped[str] = sha256_column(primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    staging_key: Mapped[str | None] = mapped_column(String(512))
    family_id: Mapped[int | None] = mapped_column(ForeignKey("families.id", ondelete="SET NULL"), index=True)
    # The file this one is delta-coded against.
    base_sha256: Mapped[str | None] = mapped_column(ForeignKey("file_objects.sha256", ondelete="RESTRICT"))
    # The base named at upload (parameter, config, model card): a hint to check, not a fact.
    declared_base: Mapped[str | None] = mapped_column(Text)
    # Architecture fingerprint (tensor names, dtypes, shapes): candidates for a base share it.
    fingerprint: Mapped[str | None] = mapped_column(CHAR(64), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stored_at: Mapped[datetime | None] = mapped_column()
    # When an upload was last told the file is held (and so skipped sending it): GC's grace period for
    # an unreferenced file runs from the later of this and created_at, so the commit can still land.
    claimed_at: Mapped[datetime | None] = mapped_column()
    # CRC-32 of each 1 MiB block of the staged bytes (storage/core/blocksums.py): reads from staging
    # check them. None once ingest has stored the file, and for uploads staged by an earlier release.
    staging_sums: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Bumped whenever a tensor this file reads through is re-encoded (storage/catalog/files.py
    # `replace_encoding`): read plans cached in process are keyed by it (storage/app/reader.py).
    plan_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class FileSegment(Base):
    """One run of a file's bytes (the header, a tensor, or the bytes between tensors), in file order."""

    __tablename__ = "file_segments"
    __table_args__ = (
        CheckConstraint('"offset" >= 0 AND length >= 0', name="extent_nonnegative"),
        # A range read loads the segments it touches, found by offset (storage/catalog/plans.py).
        Index("ix_file_segments_file_sha256_offset", "file_sha256", "offset"),
    )

    file_sha256: Mapped[str] = mapped_column(
        ForeignKey("file_objects.sha256", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    tensor_id: Mapped[str] = mapped_column(ForeignKey("tensors.id", ondelete="RESTRICT"), index=True)
    # The tensor's name in the header, or '__header__'.
    name: Mapped[str | None] = mapped_column(Text)


class Tensor(Base):
    """A unique run of bytes, addressed by their sha256, stored once.

    No codec column: every frame names its own codec and config (a long tensor's windows may each pick
    another), so a per-tensor codec could only be a lossy summary: migration 0002_formats dropped it."""

    __tablename__ = "tensors"
    __table_args__ = (
        CheckConstraint("nbytes >= 0", name="nbytes_nonnegative"),
        CheckConstraint("chain_depth >= 0", name="chain_depth_nonnegative"),
    )

    id: Mapped[str] = sha256_column(primary_key=True)
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[int]] = mapped_column(JSON)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    base_tensor_id: Mapped[str | None] = mapped_column(
        ForeignKey("tensors.id", ondelete="RESTRICT"), index=True
    )
    # Number of bases below this tensor; bounded by settings.max_chain_depth.
    chain_depth: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Frame(Base):
    """An independently decodable slice of a tensor, and where its encoded bytes live."""

    __tablename__ = "frames"
    __table_args__ = (
        CheckConstraint(
            "raw_offset >= 0 AND raw_length >= 0 AND object_offset >= 0 AND object_length >= 0",
            name="extent_nonnegative",
        ),
    )

    tensor_id: Mapped[str] = mapped_column(ForeignKey("tensors.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    raw_offset: Mapped[int] = mapped_column(BigInteger)
    raw_length: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(ForeignKey("store_objects.key", ondelete="RESTRICT"), index=True)
    object_offset: Mapped[int] = mapped_column(BigInteger)
    object_length: Mapped[int] = mapped_column(BigInteger)
    # crc32 of the decoded bytes: unsigned 32-bit, so BIGINT.
    checksum: Mapped[int] = mapped_column(BigInteger)


class StoreObject(Base):
    __tablename__ = "store_objects"
    __table_args__ = (one_of("kind", StoreObjectKind, "kind"),)

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Family(Base):
    """Models whose tensors are bitwise close; members share an architecture fingerprint."""

    __tablename__ = "families"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = sha256_column(index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    # Not a foreign key: file_objects already references families, and a cycle would need deferred
    # constraints that SQLite cannot add after the fact.
    root_sha256: Mapped[str | None] = mapped_column(CHAR(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IngestJob(Base):
    __tablename__ = "ingest_jobs"
    __table_args__ = (one_of("state", JobState, "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_sha256: Mapped[str] = mapped_column(
        ForeignKey("file_objects.sha256", ondelete="CASCADE"), index=True
    )
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repositories.id", ondelete="SET NULL"))
    path: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Account(Base):
    """A user or an organization: it owns the namespace of its name (users and organizations share one
    name space, as on the Hub). A repository belongs to the account named by its namespace."""

    __tablename__ = "accounts"
    __table_args__ = (one_of("kind", AccountKind, "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    # A hub administrator (users only) reads and writes every repository and manages accounts.
    hub_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # A disabled user's tokens stop working at once; nothing of theirs is deleted.
    disabled_at: Mapped[datetime | None] = mapped_column()
    # Logical bytes the namespace's repositories may name; None: no limit.
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A user's role in an organization."""

    __tablename__ = "memberships"
    __table_args__ = (one_of("role", Role, "role"),)

    org_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(8))


class Token(Base):
    """An API token of a user; only its sha256 is kept, so a leaked catalog leaks no usable token.

    A plain token reads (``can_write`` false) or writes whatever its user may; a fine-grained one only
    what its scopes name (TokenScope), and never more than its user may.
    """

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = sha256_column(unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)
    fine_grained: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class TokenScope(Base):
    """One entry of a fine-grained token: a namespace (``name`` None) or one repository of it."""

    __tablename__ = "token_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    namespace: Mapped[str] = mapped_column(String(96))
    name: Mapped[str | None] = mapped_column(String(96))
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)


class UploadGrant(Base):
    """The bytes of a file were uploaded (and checked against its SHA-256) for a repository: its writers
    may then name the file in a commit (service/policy.py, may_name_file). Without such a record, or a
    repository the caller may read that names it, knowing a file's hash is not enough to commit it."""

    __tablename__ = "upload_grants"

    # CASCADE both ways: GC dropping the file, or the repository's deletion, ends the grant.
    file_sha256: Mapped[str] = mapped_column(ForeignKey("file_objects.sha256", ondelete="CASCADE"), primary_key=True)
    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class XetXorb(Base):
    """A xorb a Xet client uploaded: its chunk list, and its bytes until files hold every chunk.

    ``chunk_table`` packs each chunk's 32-byte hash and little-endian u32 length (36 bytes a chunk, about
    0.05% of the data): hashes are needed only to check a shard's terms, never searched by SQL.
    """

    __tablename__ = "xet_xorbs"
    __table_args__ = (CheckConstraint("num_chunks > 0 AND unpacked_bytes >= 0", name="sizes_valid"),)

    # The API's string form of the xorb hash (docs/format.md, "Xet uploads").
    hash: Mapped[str] = sha256_column(primary_key=True)
    num_chunks: Mapped[int] = mapped_column(Integer)
    unpacked_bytes: Mapped[int] = mapped_column(BigInteger)
    chunk_table: Mapped[bytes] = mapped_column(LargeBinary)
    # The chunks' bytes, concatenated uncompressed; None once held files cover every chunk.
    raw_key: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class XetXorbSpan(Base):
    """Chunks [chunk_start, chunk_end) of a xorb are bytes of a held file from ``file_offset`` on."""

    __tablename__ = "xet_xorb_spans"
    __table_args__ = (
        CheckConstraint("chunk_start >= 0 AND chunk_end > chunk_start AND file_offset >= 0", name="extent_valid"),
    )

    xorb_hash: Mapped[str] = mapped_column(ForeignKey("xet_xorbs.hash", ondelete="CASCADE"), primary_key=True)
    chunk_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    # CASCADE: when GC drops the file, the chunks it held are no longer held.
    file_sha256: Mapped[str] = mapped_column(
        ForeignKey("file_objects.sha256", ondelete="CASCADE"), primary_key=True, index=True
    )
    chunk_end: Mapped[int] = mapped_column(Integer)
    file_offset: Mapped[int] = mapped_column(BigInteger)


class XetDedupChunk(Base):
    """A chunk the global dedup query can find: a file's first chunk or one whose hash is eligible."""

    __tablename__ = "xet_dedup_chunks"

    chunk_hash: Mapped[str] = sha256_column(primary_key=True)
    xorb_hash: Mapped[str] = mapped_column(ForeignKey("xet_xorbs.hash", ondelete="CASCADE"), index=True)
    chunk_index: Mapped[int] = mapped_column(Integer)


class XetFile(Base):
    """A Xet file hash whose reconstruction was checked and staged as the file with this SHA-256."""

    __tablename__ = "xet_files"

    file_hash: Mapped[str] = sha256_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("file_objects.sha256", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MirrorRevision(Base):
    """A revision of a mirrored repository as the upstream last resolved it (storage/app/mirror.py).

    A repository with such rows was made by the mirror; a branch is re-resolved once ``fetched_at`` is
    older than the branch TTL.
    """

    __tablename__ = "mirror_revisions"

    repo_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    revision: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_oid: Mapped[str] = mapped_column(CHAR(40))
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class MirrorClaim(Base):
    """One fetch of an upstream file's content, claimed by one process (the unique key is the
    single-flight lock across API replicas). ``claimed_at`` is its heartbeat; ``sha256`` is set once the
    bytes are held, so later askers (who may know the content only by its git blob id) find it."""

    __tablename__ = "mirror_claims"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sha256: Mapped[str | None] = mapped_column(CHAR(64))


class DamagedFile(Base):
    """A file `verify` could not rebuild byte-exact (docs/reliability.md, "Repairing damaged data").

    While the row exists the file counts as not held: an upload of its bytes is asked for and accepted
    (LFS batch, preupload, Xet), and ingest re-encodes what is damaged. The row goes once the rebuilt
    file verifies; a later `verify` that reads the file whole also drops it."""

    __tablename__ = "damaged_files"

    sha256: Mapped[str] = mapped_column(ForeignKey("file_objects.sha256", ondelete="CASCADE"), primary_key=True)
    # What reading it failed with, as verify saw it.
    error: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)


class DamagedTensor(Base):
    """A stored tensor whose frames no longer decode to its bytes: its own frames are damaged, or it is
    delta-coded (directly or through others) against such a tensor. Never a dedup hit nor a delta base;
    ingest of any file holding its bytes re-encodes it."""

    __tablename__ = "damaged_tensors"

    tensor_id: Mapped[str] = mapped_column(ForeignKey("tensors.id", ondelete="CASCADE"), primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricCounter(Base):
    """A monotonic count kept by whichever process did the work (an ingest worker, GC, the API), so
    /metrics shows the whole fleet from one table (storage/catalog/counters.py). ``label`` is one label
    value ("" for none); histogram buckets are rows named ``<name>_bucket`` labelled by their bound."""

    __tablename__ = "metric_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    value: Mapped[float] = mapped_column(Float, default=0.0)


class FileSketch(Base):
    """A stored weight file's sketch (storage/core/sketches.py): sampled element values that rank its
    relatives as candidate bases. Files with equal `layout` sampled the same elements of the same tensors."""

    __tablename__ = "file_sketches"

    file_sha256: Mapped[str] = mapped_column(
        ForeignKey("file_objects.sha256", ondelete="CASCADE"), primary_key=True
    )
    layout: Mapped[str] = sha256_column(index=True)
    sketch: Mapped[bytes] = mapped_column(LargeBinary)


class FamilyIngest(Base):
    """One family's ingest in progress: the row is the lock that makes relatives ingested at the same time
    wait for each other (so the later one sees the earlier as a candidate base). ``taken_at`` bounds it:
    a holder that died leaves a row the next ingest takes over once it is older than the lease."""

    __tablename__ = "family_ingests"

    fingerprint: Mapped[str] = sha256_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
