"""Catalog queries for Xet uploads: xorbs, the spans of held files their chunks live in, dedup, files.

Hashes are stored in the protocol's string form (``hash_to_hex``), the form the CAS URLs carry. Inserts
that may race an identical one (two shards naming the same chunk or file) go through a savepoint, so the
loser keeps the winner's row instead of failing its whole transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy.exc
from sqlalchemy import delete, exists, select, union_all, update
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

from storage.catalog import damage
from storage.catalog.db import is_unique_violation
from storage.catalog.models import Base, FileObject, XetDedupChunk, XetFile, XetXorb, XetXorbSpan, utcnow
from storage.core.keys import XORB_PREFIX


@dataclass(frozen=True, slots=True)
class Span:
    chunk_start: int
    chunk_end: int
    file_sha256: str
    file_offset: int


def add_if_absent(session: Session, row: Base) -> bool:
    """Insert `row`; False when a row with its key exists already (kept as it is)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except sqlalchemy.exc.IntegrityError as exc:
        if is_unique_violation(exc):
            return False
        raise
    return True


def xorb(session: Session, xorb_hash: str) -> XetXorb | None:
    return session.get(XetXorb, xorb_hash)


def spans(session: Session, xorb_hash: str) -> list[Span]:
    rows = session.scalars(
        select(XetXorbSpan).where(XetXorbSpan.xorb_hash == xorb_hash).order_by(XetXorbSpan.chunk_start)
    )
    return [Span(r.chunk_start, r.chunk_end, r.file_sha256, r.file_offset) for r in rows]


def held_spans(session: Session, xorb_hash: str) -> list[Span]:
    """The xorb's spans in files whose bytes the hub can produce: a span in a damaged file (verify found
    it) holds nothing, so the xorb is not held through it and a client is asked to send it again."""
    found = spans(session, xorb_hash)
    unheld = damage.unheld(session, {s.file_sha256 for s in found})
    return [s for s in found if s.file_sha256 not in unheld]


def add_spans(session: Session, xorb_hash: str, new: Sequence[Span]) -> None:
    for span in new:
        add_if_absent(
            session,
            XetXorbSpan(
                xorb_hash=xorb_hash, chunk_start=span.chunk_start, chunk_end=span.chunk_end,
                file_sha256=span.file_sha256, file_offset=span.file_offset,
            ),
        )


def release_raw(session: Session, xorb_hash: str) -> str | None:
    """Forget the xorb's own copy (files hold every chunk now); its store key, to delete after commit."""
    row = session.get(XetXorb, xorb_hash)
    if row is None or row.raw_key is None:
        return None
    key = row.raw_key
    session.execute(update(XetXorb).where(XetXorb.hash == xorb_hash).values(raw_key=None))
    return key


def restore_raw(session: Session, xorb_hash: str, key: str) -> bool:
    """Name a new copy of a known xorb that has none; False when another upload's copy came first."""
    # Its GC clock restarts: the copy is as new as an upload.
    result = session.execute(
        update(XetXorb).where(XetXorb.hash == xorb_hash, XetXorb.raw_key.is_(None))
        .values(raw_key=key, created_at=utcnow())
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def hand_over_raw(session: Session, xorb_hash: str, key: str) -> bool:
    """The xorb's copy at `key` becomes a staged file's (whose row names it from this transaction on);
    False when the xorb no longer names that copy (a shard or GC released it first)."""
    result = session.execute(
        update(XetXorb).where(XetXorb.hash == xorb_hash, XetXorb.raw_key == key).values(raw_key=None)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def dedup_chunk(session: Session, chunk_hash: str) -> tuple[str, int] | None:
    row = session.get(XetDedupChunk, chunk_hash)
    return None if row is None else (row.xorb_hash, row.chunk_index)


def add_dedup_chunks(session: Session, xorb_hash: str, chunks: Sequence[tuple[str, int]]) -> None:
    for chunk_hash, index in chunks:
        if session.get(XetDedupChunk, chunk_hash) is None:
            add_if_absent(session, XetDedupChunk(chunk_hash=chunk_hash, xorb_hash=xorb_hash, chunk_index=index))


def file_sha256(session: Session, file_hash: str) -> str | None:
    row = session.get(XetFile, file_hash)
    return None if row is None else row.sha256


def add_file(session: Session, file_hash: str, sha256: str, size: int) -> None:
    add_if_absent(session, XetFile(file_hash=file_hash, sha256=sha256, size=size))


def abandoned_raw(session: Session, cutoff: datetime) -> list[str]:
    """Xorbs still holding their own copy since before `cutoff`: no shard covered all their chunks."""
    rows = session.scalars(select(XetXorb.hash).where(XetXorb.raw_key.is_not(None), XetXorb.created_at < cutoff))
    return list(rows)


def drop_unheld(session: Session) -> int:
    """Forget xorbs none of whose chunks can be produced any more (no copy, no span); how many."""
    doomed = list(
        session.scalars(
            select(XetXorb.hash).where(
                XetXorb.raw_key.is_(None), ~exists().where(XetXorbSpan.xorb_hash == XetXorb.hash)
            )
        )
    )
    for start in range(0, len(doomed), 500):
        batch = doomed[start : start + 500]
        session.execute(delete(XetDedupChunk).where(XetDedupChunk.xorb_hash.in_(batch)))
        session.execute(delete(XetXorb).where(XetXorb.hash.in_(batch)))
    return len(doomed)


def raw_keys(session: Session) -> set[str]:
    """Every key under the xorb prefix the catalog names: xorbs' copies, and the staging copies files
    took over from them (one statement, so a hand-over between two reads cannot hide a key)."""
    copies = select(XetXorb.raw_key).where(XetXorb.raw_key.is_not(None))
    adopted = select(FileObject.staging_key).where(FileObject.staging_key.like(f"{XORB_PREFIX}%"))
    return {key for key in session.scalars(union_all(copies, adopted)) if key}
