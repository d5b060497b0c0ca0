"""Checking a file entry against the chunks it names: one test per rule."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from storage.core.xet import errors
from storage.core.xet.chunking import chunks_of
from storage.core.xet.hashing import file_hash, hash_to_hex, verification_hash
from storage.core.xet.reconstruction import check_file, check_sha256, chunks_by_xorb, resolve_terms
from storage.core.xet.shard import FileEntry, Shard, Term, xorb_entry
from storage.core.xet.xorb import build_xorb

_DATA = random.Random(7).randbytes(500_000)
_XORB = build_xorb(chunks_of([_DATA]))
_REFS = _XORB.chunk_refs()
_COUNT = len(_REFS)


def _entry(terms: list[tuple[int, int]]) -> FileEntry:
    """A correct entry for the file made of these chunk ranges of _XORB."""
    built = []
    for start, end in terms:
        built.append(Term(_XORB.hash, start, end, sum(size for _, size in _REFS[start:end])))
    refs = [ref for start, end in terms for ref in _REFS[start:end]]
    verification = tuple(verification_hash(h for h, _ in _REFS[start:end]) for start, end in terms)
    return FileEntry(file_hash(refs), tuple(built), None, verification)


_XORBS = {_XORB.hash: _REFS}
_WHOLE = _entry([(0, _COUNT)])
_NAME = hash_to_hex(_WHOLE.file_hash)


def test_a_correct_entry_passes() -> None:
    assert _COUNT > 3
    check_file(_WHOLE, _XORBS)
    # Terms may overlap and repeat chunks, as the client writes for a file that repeats itself.
    check_file(_entry([(0, 3), (1, 2), (0, _COUNT)]), _XORBS)


def test_an_empty_file_has_no_terms_and_the_zero_hash() -> None:
    check_file(FileEntry(bytes(32), ()), {})


def test_chunks_by_xorb_reads_a_shards_listing() -> None:
    listing = Shard((_WHOLE,), (xorb_entry(_XORB.hash, _REFS),))
    assert chunks_by_xorb(listing) == _XORBS
    assert resolve_terms(_WHOLE, chunks_by_xorb(listing)) == [_REFS]


def _refuses(entry: FileEntry, error: type[errors.FileCheckError], message: str, **options: bool) -> None:
    with pytest.raises(error) as caught:
        check_file(entry, _XORBS, **options)
    assert str(caught.value) == message
    assert caught.value.status == 400


def test_unknown_xorb() -> None:
    with pytest.raises(errors.UnknownXorb) as caught:
        check_file(_WHOLE, {})
    assert (
        str(caught.value) == f"file {_NAME} term 0: xorb {hash_to_hex(_XORB.hash)} is neither stored nor in this upload"
    )


def test_term_past_the_xorb() -> None:
    term = dataclasses.replace(_WHOLE.terms[0], chunk_end=_COUNT + 1)
    _refuses(
        dataclasses.replace(_WHOLE, terms=(term,)),
        errors.TermOutOfRange,
        f"file {_NAME} term 0: chunks [0, {_COUNT + 1}) reach past xorb {hash_to_hex(_XORB.hash)}'s {_COUNT} chunks",
    )


def test_term_length() -> None:
    term = _WHOLE.terms[0]
    wrong = dataclasses.replace(term, unpacked_length=term.unpacked_length - 1)
    _refuses(
        dataclasses.replace(_WHOLE, terms=(wrong,)),
        errors.TermLengthMismatch,
        f"file {_NAME} term 0: declares {term.unpacked_length - 1} bytes"
        f" but its chunks add up to {term.unpacked_length}",
    )


def test_file_hash() -> None:
    other = bytes(range(32))
    _refuses(
        dataclasses.replace(_WHOLE, file_hash=other),
        errors.FileHashMismatch,
        f"file's chunks hash to {_NAME}, not {hash_to_hex(other)}",
    )


def test_verification_required() -> None:
    bare = dataclasses.replace(_WHOLE, verification=())
    _refuses(bare, errors.VerificationMissing, f"file {_NAME}: has 1 terms but 0 verification entries")
    check_file(bare, _XORBS, require_verification=False)


def test_verification_mismatch() -> None:
    wrong = bytes(32)
    actual = _WHOLE.verification[0]
    _refuses(
        dataclasses.replace(_WHOLE, verification=(wrong,)),
        errors.VerificationMismatch,
        f"file {_NAME} term 0: verification hash {hash_to_hex(wrong)} does not match the chunks' {hash_to_hex(actual)}",
        require_verification=False,
    )


def test_sha256() -> None:
    digest = hashlib.sha256(_DATA).digest()
    check_sha256(dataclasses.replace(_WHOLE, sha256=digest), digest)
    check_sha256(_WHOLE, digest)  # nothing declared, nothing to check
    with pytest.raises(errors.Sha256Mismatch) as caught:
        check_sha256(dataclasses.replace(_WHOLE, sha256=bytes(32)), digest)
    assert str(caught.value) == f"file {_NAME}: content has SHA-256 {digest.hex()}, the shard says {'00' * 32}"
