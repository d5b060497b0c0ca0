"""Xet uploads: xorbs and shards from a Xet client become files staged exactly like LFS uploads.

A client sends xorbs (compressed runs of content-defined chunks) and then a shard listing each file as
terms, chunk ranges of xorbs. Nothing it claims is trusted: a xorb's chunks are hashed on arrival and must
make up the hash in its URL; each file's terms must name chunks the hub can produce, carry the
verification hash of exactly those chunks (proof the uploader had them, not only the xorb's name), and
hash to the file hash; while the file is rebuilt every chunk is hashed again, the SHA-256 is taken, and
the bytes go to the same upload use case an LFS PUT uses, streamed.

What is kept (docs/format.md, "Xet uploads"): a xorb's chunk list, and its bytes only until files hold
every chunk; then spans (chunks [a, b) of xorb X are bytes of file F from offset o) say where to read
them back, through the hub's ordinary reads, when a later shard names them. Nothing is stored twice: a
file that is exactly one xorb's chunks is staged under the xorb's own copy (read once, hashed, not
written again); the file row takes the object over in the transaction that records its spans.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from storage.app.views import FileInfo
from storage.catalog import xet as catalog
from storage.catalog.models import XetXorb
from storage.catalog.xet import Span
from storage.core import keys
from storage.core.errors import IntegrityError, InvalidInput
from storage.core.xet import errors as xet_errors
from storage.core.xet.hashing import chunk_hash, hash_to_hex, hex_to_hash
from storage.core.xet.reconstruction import check_file
from storage.core.xet.shard import FileEntry, Shard, parse_shard, serialize_shard, with_hmac_key, xorb_entry
from storage.core.xet.xorb import MAX_SERIALIZED_XORB, parse_xorb
from storage.objectstore import ObjectNotFound, ObjectStore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# The protocol's bound on a serialized xorb (64 MiB of chunk data plus headers and the footer); the CAS
# refuses bigger bodies before reading them.
MAX_XORB_BYTES = MAX_SERIALIZED_XORB
# Shards the client sends stay far below this (it cuts them at 64 MiB too).
MAX_SHARD_BYTES = 64 << 20
# A chunk is worth a global dedup entry when its hash's last word is 0 mod this (the client asks only
# about those, and about each file's first chunk): one chunk in 1024, so the index stays small.
DEDUP_MODULUS = 1024
# How long a client may trust a dedup answer: an hour, the GC grace period, after which the files
# holding those chunks may be gone.
DEDUP_ANSWER_SECONDS = 3600

_CHUNK_ENTRY = struct.Struct("<32sI")


class XorbRejected(InvalidInput):
    """xorb rejected: {detail}"""


class ShardRejected(InvalidInput):
    """shard rejected: {detail}"""


class FileUploads(Protocol):
    """The hub's use cases this module needs: the same upload an LFS PUT makes, and ranged reads."""

    def has_file(self, sha256: str) -> bool: ...
    def upload(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> FileInfo: ...
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def adopt(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None,
        expected_size: int,
        claim: Callable[[Session, str], bool],
    ) -> FileInfo | None: ...


@dataclass
class _Xorb:
    """A xorb as the catalog knows it; chunk i is bytes [offsets[i], offsets[i + 1]) of the xorb."""

    hex: str
    hashes: list[bytes]
    offsets: list[int]
    raw_key: str | None
    spans: list[Span] = field(default_factory=list)

    @property
    def num_chunks(self) -> int:
        return len(self.hashes)

    @property
    def refs(self) -> list[tuple[bytes, int]]:
        return [(digest, self.offsets[i + 1] - self.offsets[i]) for i, digest in enumerate(self.hashes)]

    def length(self, start: int, end: int) -> int:
        return self.offsets[end] - self.offsets[start]

    def span_at(self, chunk: int) -> Span | None:
        return next((s for s in self.spans if s.chunk_start <= chunk < s.chunk_end), None)

    def covers(self, start: int, end: int) -> bool:
        """True when spans alone (no raw copy) can produce chunks [start, end)."""
        chunk = start
        while chunk < end:
            span = self.span_at(chunk)
            if span is None:
                return False
            chunk = span.chunk_end
        return True


@dataclass(frozen=True, slots=True)
class _Term:
    xorb: _Xorb
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Plan:
    file_hash: str
    terms: tuple[_Term, ...]
    size: int
    sha256: str | None


@dataclass
class XetGcReport:
    raw_xorbs: int = 0
    bytes_freed: int = 0
    xorb_rows: int = 0


@dataclass(frozen=True, slots=True)
class StagedFile:
    file_hash: str
    sha256: str
    size: int
    # False when the hub held the bytes already (nothing was written).
    written: bool


def _table(hashes_and_sizes: Iterable[tuple[bytes, int]]) -> bytes:
    return b"".join(_CHUNK_ENTRY.pack(h, n) for h, n in hashes_and_sizes)


def _load(row: XetXorb, spans: list[Span]) -> _Xorb:
    hashes, offsets = [], [0]
    for digest, size in _CHUNK_ENTRY.iter_unpack(row.chunk_table):
        hashes.append(digest)
        offsets.append(offsets[-1] + size)
    return _Xorb(row.hash, hashes, offsets, row.raw_key, spans)


def _dedup_eligible(digest: bytes) -> bool:
    return int.from_bytes(digest[24:32], "little") % DEDUP_MODULUS == 0


def _hex(text: str, what: str) -> bytes:
    try:
        return hex_to_hash(text)
    except ValueError as exc:
        raise InvalidInput(detail=f"{what} {text[:80]!r} is not a 64-hex-digit Xet hash") from exc


class XetUploads:
    def __init__(
        self,
        store: ObjectStore,
        session: Callable[[], AbstractContextManager[Session]],
        files: FileUploads,
        *,
        max_file_bytes: int,
    ) -> None:
        self._store = store
        self._session = session
        self._files = files
        self._max_file_bytes = max_file_bytes

    # Xorbs

    def put_xorb(self, xorb_hex: str, body: bytes | bytearray | memoryview) -> bool:
        """Check and keep an uploaded xorb; False when it was held already (not an error)."""
        expected = _hex(xorb_hex, "xorb hash")
        xorb_hex = hash_to_hex(expected)  # one spelling (lowercase) for catalog keys
        if len(body) > MAX_XORB_BYTES:
            raise XorbRejected(detail=f"{len(body)} bytes, more than the {MAX_XORB_BYTES} a xorb may have")
        held = self._xorb({}, expected)
        if held is not None and (held.raw_key is not None or held.covers(0, held.num_chunks)):
            return False
        xorb = parse_xorb(body, expected_hash=expected)
        key = keys.xorb_key()
        # Uncompressed, so a term is one ranged read (and a one-xorb file's staging copy as it is); the
        # copy lives only until files hold its chunks.
        self._store.put_stream(key, (chunk.data for chunk in xorb.chunks))
        row = XetXorb(
            hash=xorb_hex,
            num_chunks=len(xorb.chunks),
            unpacked_bytes=sum(len(c.data) for c in xorb.chunks),
            chunk_table=_table((c.hash, len(c.data)) for c in xorb.chunks),
            raw_key=key,
        )
        with self._session() as s:
            # Known, but files no longer hold all its chunks (GC took them): its copy is back.
            kept = catalog.add_if_absent(s, row) if held is None else catalog.restore_raw(s, xorb_hex, key)
        if not kept:  # an identical upload won the race: its copy is the one the row names
            self._store.delete(key)
        return kept

    # Shards

    def register_shard(self, body: bytes | bytearray | memoryview) -> list[StagedFile]:
        """Stage every file the shard lists (checked, rebuilt, hashed); the client commits them next."""
        if len(body) > MAX_SHARD_BYTES:
            raise ShardRejected(detail=f"{len(body)} bytes, more than the {MAX_SHARD_BYTES} a shard may have")
        shard = parse_shard(body)
        xorbs: dict[bytes, _Xorb] = {}
        for entry in shard.xorbs:
            if self._xorb(xorbs, entry.xorb_hash) is None:
                listed = hash_to_hex(entry.xorb_hash)
                raise ShardRejected(detail=f"it lists xorb {listed} as uploaded, but that xorb never was")
        plans = [self._plan(xorbs, entry) for entry in shard.files]
        staged = [self._stage(plan) for plan in plans]
        self._release_held(xorbs.values())
        return staged

    def _xorb(self, cache: dict[bytes, _Xorb], digest: bytes) -> _Xorb | None:
        if digest not in cache:
            xorb_hex = hash_to_hex(digest)
            with self._session() as s:
                row = catalog.xorb(s, xorb_hex)
                if row is None:
                    return None
                cache[digest] = _load(row, catalog.held_spans(s, xorb_hex))
        return cache[digest]

    def _plan(self, xorbs: dict[bytes, _Xorb], entry: FileEntry) -> _Plan:
        """The file's terms against the xorbs the catalog knows (never the shard's own xorb listing)."""
        known = {}
        for term in entry.terms:
            xorb = self._xorb(xorbs, term.xorb_hash)
            if xorb is not None:
                known[term.xorb_hash] = xorb.refs
        check_file(entry, known)
        name = hash_to_hex(entry.file_hash)
        if entry.size > self._max_file_bytes:
            raise ShardRejected(detail=f"file {name} is larger than the {self._max_file_bytes} bytes allowed")
        terms = tuple(_Term(xorbs[t.xorb_hash], t.chunk_start, t.chunk_end) for t in entry.terms)
        return _Plan(name, terms, entry.size, entry.sha256.hex() if entry.sha256 is not None else None)

    def _stage(self, plan: _Plan) -> StagedFile:
        with self._session() as s:
            known = catalog.file_sha256(s, plan.file_hash)
        if known is not None and self._files.has_file(known):
            # Checked when it was first staged: same chunk hashes, same bytes.
            if plan.sha256 is not None and plan.sha256 != known:
                raise xet_errors.Sha256Mismatch(file=plan.file_hash, actual=known, declared=plan.sha256)
            return StagedFile(plan.file_hash, known, plan.size, written=False)
        if plan.sha256 is None or not self._files.has_file(plan.sha256):
            adopted = self._adopt(plan)
            if adopted is not None:
                return adopted
            sent = 0

            def counted() -> Iterator[bytes]:
                nonlocal sent
                for piece in self._file_bytes(plan):
                    sent += len(piece)
                    yield piece

            info = self._files.upload(counted(), expected_sha256=plan.sha256, expected_size=plan.size)
            if sent == plan.size:  # all of it went through the upload's hashing: the SHA-256 is proven
                self._record(plan, info.sha256)
                return StagedFile(plan.file_hash, info.sha256, plan.size, written=True)
            # An identical upload won the race and the hub took none of ours: check the claim as below.
        # The claimed bytes are held; check the claim without writing them a second time.
        digest = hashlib.sha256()
        for piece in self._file_bytes(plan):
            digest.update(piece)
        if digest.hexdigest() != plan.sha256:
            raise xet_errors.Sha256Mismatch(file=plan.file_hash, actual=digest.hexdigest(), declared=plan.sha256)
        self._record(plan, plan.sha256)
        return StagedFile(plan.file_hash, plan.sha256, plan.size, written=False)

    def _adopt(self, plan: _Plan) -> StagedFile | None:
        """Stage a file that is exactly one xorb's chunks under the xorb's own copy: one read (each chunk
        re-hashed, the SHA-256 and block sums taken), no second write. None when it is not such a file,
        or the copy went first (another shard's files took it): then it is staged the ordinary way."""
        if len(plan.terms) != 1:
            return None
        term = plan.terms[0]
        xorb, key = term.xorb, term.xorb.raw_key
        if key is None or term.start != 0 or term.end != xorb.num_chunks or xorb.spans:
            return None

        def claim(s: Session, sha256: str) -> bool:
            # Catalog first: the copy is the file's staging object from here on, no longer the xorb's.
            if not catalog.hand_over_raw(s, xorb.hex, key):
                return False
            self._record_in(s, plan, sha256)
            return True

        copy = self._store.iter_range(key, 0, xorb.offsets[-1])  # this copy only: no fallback to spans
        try:
            info = self._files.adopt(key, self._checked_chunks(term, copy), expected_sha256=plan.sha256,
                                     expected_size=plan.size, claim=claim)
        except ObjectNotFound:
            info = None
        if info is None:  # the claim's transaction, if it ran, was rolled back: read the catalog again
            with self._session() as s:
                row = catalog.xorb(s, xorb.hex)
                xorb.raw_key = row.raw_key if row is not None else None
                xorb.spans = catalog.held_spans(s, xorb.hex)
            return None
        xorb.raw_key = None
        return StagedFile(plan.file_hash, info.sha256, plan.size, written=True)

    def _record(self, plan: _Plan, sha256: str) -> None:
        with self._session() as s:
            self._record_in(s, plan, sha256)

    def _record_in(self, s: Session, plan: _Plan, sha256: str) -> None:
        """The file's hash, where its terms' chunks now live, and its chunks worth a dedup entry."""
        catalog.add_file(s, plan.file_hash, sha256, plan.size)
        offset = 0
        for number, term in enumerate(plan.terms):
            xorb = term.xorb
            if not xorb.covers(term.start, term.end):
                span = Span(term.start, term.end, sha256, offset)
                catalog.add_spans(s, xorb.hex, [span])
                xorb.spans = sorted([*xorb.spans, span], key=lambda x: x.chunk_start)
            chunks = [(hash_to_hex(xorb.hashes[i]), i) for i in range(term.start, term.end)
                      if (number == 0 and i == term.start) or _dedup_eligible(xorb.hashes[i])]
            catalog.add_dedup_chunks(s, xorb.hex, chunks)
            offset += xorb.length(term.start, term.end)

    def _release_held(self, xorbs: Iterable[_Xorb]) -> None:
        """Drop the xorbs' own copies where files now hold every chunk: catalog first, then the store."""
        for xorb in xorbs:
            if xorb.raw_key is None or not xorb.covers(0, xorb.num_chunks):
                continue
            with self._session() as s:
                key = catalog.release_raw(s, xorb.hex)
            xorb.raw_key = None
            if key is not None:
                self._store.delete(key)

    def _file_bytes(self, plan: _Plan) -> Iterator[bytes]:
        for term in plan.terms:
            yield from self._checked_chunks(term)

    def _checked_chunks(self, term: _Term, source: Iterable[bytes] | None = None) -> Iterator[bytes]:
        """The term's chunks (read from `source`, by default wherever they are held), each hashed again:
        bytes that are not what the xorb named never pass."""
        xorb, index = term.xorb, term.start
        buffer, position = b"", 0
        for piece in self._source(term) if source is None else source:
            buffer = buffer[position:] + piece if position < len(buffer) else piece
            position = 0
            while index < term.end:
                size = xorb.offsets[index + 1] - xorb.offsets[index]
                if len(buffer) - position < size:
                    break
                data = buffer[position : position + size]
                position += size
                if chunk_hash(data) != xorb.hashes[index]:
                    raise IntegrityError(detail=f"chunk {index} of xorb {xorb.hex} read back with another hash")
                yield data
                index += 1
        if index != term.end or position != len(buffer):
            raise IntegrityError(detail=f"chunks [{term.start}, {term.end}) of xorb {xorb.hex} read back short")

    def _source(self, term: _Term) -> Iterator[bytes]:
        xorb = term.xorb
        if xorb.raw_key is not None:
            sent = 0
            try:
                for piece in self._store.iter_range(
                    xorb.raw_key, xorb.offsets[term.start], xorb.offsets[term.end]
                ):
                    sent += len(piece)
                    yield piece
                return
            except ObjectNotFound:
                if sent:
                    raise
                # Another shard's files took over these chunks and dropped the copy: read them there.
                with self._session() as s:
                    xorb.spans = catalog.held_spans(s, xorb.hex)
                xorb.raw_key = None
        chunk = term.start
        while chunk < term.end:
            span = xorb.span_at(chunk)
            if span is None:
                raise ShardRejected(detail=f"chunk {chunk} of xorb {xorb.hex} is no longer held (upload it again)")
            stop = min(span.chunk_end, term.end)
            begin = span.file_offset + xorb.offsets[chunk] - xorb.offsets[span.chunk_start]
            yield from self._files.read(span.file_sha256, begin, begin + xorb.length(chunk, stop))
            chunk = stop

    # Garbage collection

    def collect_garbage(self, cutoff: datetime, *, dry_run: bool = False) -> XetGcReport:
        return collect_xet_garbage(self._store, self._session, cutoff, dry_run=dry_run)

    # Global dedup

    def dedup_answer(self, chunk_hex: str, now: float | None = None) -> bytes | None:
        """A shard describing the held xorb that contains the chunk, or None when none is held."""
        chunk_hex = hash_to_hex(_hex(chunk_hex, "chunk hash"))
        with self._session() as s:
            hit = catalog.dedup_chunk(s, chunk_hex)
        if hit is None:
            return None
        xorb = self._xorb({}, hex_to_hash(hit[0]))
        if xorb is None or (xorb.raw_key is None and not xorb.covers(0, xorb.num_chunks)):
            return None
        listing = xorb_entry(hex_to_hash(xorb.hex), xorb.refs)
        now = time.time() if now is None else now
        # Chunk hashes go out keyed with a fresh secret: a client can match only chunks it has (it
        # hashes its own), so the answer never hands out hashes that would pass a verification check.
        answer = with_hmac_key(Shard(files=(), xorbs=(listing,)), secrets.token_bytes(32))
        return serialize_shard(answer, footer=True, creation_timestamp=int(now),
                               key_expiry=int(now) + DEDUP_ANSWER_SECONDS)


def collect_xet_garbage(
    store: ObjectStore,
    session: Callable[[], AbstractContextManager[Session]],
    cutoff: datetime,
    *,
    dry_run: bool = False,
) -> XetGcReport:
    """Drop xorb copies no shard covered before `cutoff` (an upload cut off between its xorbs and
    its shard), copies no row names (a crash between the two writes), and xorbs nothing holds."""
    report = XetGcReport()
    with session() as s:
        abandoned = catalog.abandoned_raw(s, cutoff)
    doomed: list[str] = []
    for xorb_hex in abandoned:
        if dry_run:
            with session() as s:
                row = catalog.xorb(s, xorb_hex)
            if row is not None and row.raw_key is not None:
                doomed.append(row.raw_key)
            continue
        with session() as s:
            key = catalog.release_raw(s, xorb_hex)
        if key is not None:
            doomed.append(key)
    with session() as s:
        known = catalog.raw_keys(s)
    for info in store.list(keys.XORB_PREFIX):
        if info.key not in known and info.last_modified < cutoff and info.key not in doomed:
            doomed.append(info.key)
    for key in doomed:
        head = store.head(key)
        if head is None:
            continue
        report.raw_xorbs += 1
        report.bytes_freed += head.size
        if not dry_run:
            store.delete(key)
    if not dry_run:
        with session() as s:
            report.xorb_rows = catalog.drop_unheld(s)
    return report


__all__: Sequence[str] = (
    "MAX_XORB_BYTES", "ShardRejected", "StagedFile", "XetUploads", "XorbRejected", "collect_xet_garbage",
)
