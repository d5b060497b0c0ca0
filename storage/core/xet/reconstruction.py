"""Checking a shard's file entries against the chunks they name.

A shard says "file F is chunks [a, b) of xorb X, then ...". Before the server records that, it checks
the claim against xorbs it holds (or that the same upload lists): each term's chunks exist and add up to
its length, the verification hash of each term matches those chunks' hashes (proof that the uploader
knew the chunks, not just a xorb's name), and the file hash matches them all.

The caller supplies the xorbs as a mapping from xorb hash to its chunks' (hash, length) in order, from
its catalog or from `chunks_by_xorb(shard)`; no I/O happens here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from storage.core.xet import errors
from storage.core.xet.hashing import file_hash, hash_to_hex, verification_hash
from storage.core.xet.shard import FileEntry, Shard

ChunkRefs = Sequence[tuple[bytes, int]]


def chunks_by_xorb(shard: Shard) -> dict[bytes, list[tuple[bytes, int]]]:
    """The (hash, length) chunks of every xorb a shard lists."""
    return {xorb.xorb_hash: [(chunk.chunk_hash, chunk.length) for chunk in xorb.chunks] for xorb in shard.xorbs}


def resolve_terms(entry: FileEntry, xorbs: Mapping[bytes, ChunkRefs]) -> list[ChunkRefs]:
    """Each term's chunks, checked to exist and to add up to the term's length."""
    name = hash_to_hex(entry.file_hash)
    resolved: list[ChunkRefs] = []
    for index, term in enumerate(entry.terms):
        chunks = xorbs.get(term.xorb_hash)
        xorb_name = hash_to_hex(term.xorb_hash)
        if chunks is None:
            raise errors.UnknownXorb(file=name, term=index, xorb=xorb_name)
        if term.chunk_end > len(chunks):
            raise errors.TermOutOfRange(
                file=name, term=index, start=term.chunk_start, end=term.chunk_end, xorb=xorb_name, count=len(chunks)
            )
        selected = chunks[term.chunk_start : term.chunk_end]
        actual = sum(length for _, length in selected)
        if actual != term.unpacked_length:
            raise errors.TermLengthMismatch(file=name, term=index, declared=term.unpacked_length, actual=actual)
        resolved.append(selected)
    return resolved


def check_file(entry: FileEntry, xorbs: Mapping[bytes, ChunkRefs], require_verification: bool = True) -> None:
    """Refuse a file entry whose terms, verification hashes or file hash do not match the chunks.

    The client always sends verification hashes; `require_verification=False` accepts an entry that
    has none (and still checks any it has)."""
    per_term = resolve_terms(entry, xorbs)
    name = hash_to_hex(entry.file_hash)
    if entry.verification or require_verification:
        if len(entry.verification) != len(entry.terms):
            raise errors.VerificationMissing(file=name, terms=len(entry.terms), entries=len(entry.verification))
        for index, (declared, chunks) in enumerate(zip(entry.verification, per_term, strict=True)):
            actual = verification_hash(digest for digest, _ in chunks)
            if actual != declared:
                raise errors.VerificationMismatch(
                    file=name, term=index, declared=hash_to_hex(declared), actual=hash_to_hex(actual)
                )
    computed = file_hash(chunk for chunks in per_term for chunk in chunks)
    if computed != entry.file_hash:
        raise errors.FileHashMismatch(actual=hash_to_hex(computed), expected=name)


def check_sha256(entry: FileEntry, sha256: bytes) -> None:
    """Refuse rebuilt content whose SHA-256 is not the one the shard's metadata extension names
    (nothing to check when the entry names none)."""
    if entry.sha256 is not None and entry.sha256 != sha256:
        raise errors.Sha256Mismatch(file=hash_to_hex(entry.file_hash), actual=sha256.hex(), declared=entry.sha256.hex())
