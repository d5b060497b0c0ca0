"""The shard format: round trips with and without footer, and one test per hostile-input rule."""

from __future__ import annotations

import struct

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.xet import errors, shard
from storage.core.xet.chunking import MAX_CHUNK
from storage.core.xet.hashing import hash_to_hex
from storage.core.xet.shard import (
    BOOKEND_HASH,
    FileEntry,
    Shard,
    Term,
    XorbChunk,
    XorbEntry,
    parse_shard,
    serialize_shard,
    with_hmac_key,
    xorb_entry,
)

hashes = st.binary(min_size=32, max_size=32).filter(lambda h: h != BOOKEND_HASH)


@st.composite
def terms(draw: st.DrawFn) -> Term:
    start = draw(st.integers(0, 2**32 - 2))
    end = draw(st.integers(start + 1, min(start + 1000, 2**32 - 1)))
    length = draw(st.integers(1, min((end - start) * MAX_CHUNK, 2**32 - 1)))
    return Term(draw(hashes), start, end, length)


@st.composite
def file_entries(draw: st.DrawFn) -> FileEntry:
    file_terms = tuple(draw(st.lists(terms(), max_size=4)))
    verified = draw(st.booleans()) or not file_terms
    verification = tuple(draw(hashes) for _ in file_terms) if verified else ()
    return FileEntry(draw(hashes), file_terms, draw(st.none() | hashes), verification)


@st.composite
def xorb_entries(draw: st.DrawFn) -> XorbEntry:
    sizes = draw(st.lists(st.integers(1, MAX_CHUNK), min_size=1, max_size=6))
    flags = st.sampled_from([0, shard.CHUNK_FLAG_GLOBAL_DEDUP])
    entry = xorb_entry(draw(hashes), [(draw(hashes), size) for size in sizes], draw(st.integers(0, 2**32 - 1)))
    chunks = tuple(XorbChunk(c.chunk_hash, c.offset, c.length, draw(flags)) for c in entry.chunks)
    return XorbEntry(entry.xorb_hash, chunks, entry.num_bytes_on_disk)


@st.composite
def shards(draw: st.DrawFn) -> Shard:
    xorbs = draw(st.lists(xorb_entries(), max_size=4, unique_by=lambda x: x.xorb_hash))
    return Shard(tuple(draw(st.lists(file_entries(), max_size=4))), tuple(xorbs))


@given(shards(), st.booleans())
def test_round_trip(value: Shard, footer: bool) -> None:
    data = serialize_shard(value, footer=footer, creation_timestamp=1_700_000_000)
    assert parse_shard(data) == value


@given(shards(), hashes.filter(any))
def test_keyed_round_trip(value: Shard, key: bytes) -> None:
    keyed = with_hmac_key(value, key)
    assert parse_shard(serialize_shard(keyed, footer=True)) == keyed
    for plain, hidden in zip(value.xorbs, keyed.xorbs, strict=True):
        assert [blake3.blake3(c.chunk_hash, key=key).digest() for c in plain.chunks] == [
            c.chunk_hash for c in hidden.chunks
        ]


def test_an_hmac_key_needs_a_footer() -> None:
    keyed = with_hmac_key(Shard((), (xorb_entry(b"\x01" * 32, [(b"\x02" * 32, 5)]),)), b"\x07" * 32)
    with pytest.raises(ValueError):
        serialize_shard(keyed)
    with pytest.raises(ValueError):
        with_hmac_key(keyed, b"\x08" * 32)
    with pytest.raises(ValueError):
        with_hmac_key(Shard((), ()), bytes(32))


def test_footer_lookup_tables_are_sorted_and_point_at_entries() -> None:
    xorbs = (
        xorb_entry(b"\x09" * 32, [(b"\x05" * 32, 10), (b"\x01" * 32, 20)]),
        xorb_entry(b"\x02" * 32, [(b"\x03" * 32, 5)]),
    )
    data = serialize_shard(Shard((), xorbs), footer=True)
    footer = struct.unpack_from("<9Q", data, len(data) - 200)
    chunk_at, chunk_count = footer[7], footer[8]
    table = [struct.unpack_from("<QII", data, chunk_at + 16 * i) for i in range(chunk_count)]
    assert [key for key, _, _ in table] == sorted(key for key, _, _ in table)
    # (xorb entry index in the xorb section, chunk index): the first xorb is entry 0, the second 3.
    assert sorted((xorb, chunk) for _, xorb, chunk in table) == [(0, 0), (0, 1), (3, 0)]


# --- hostile input -----------------------------------------------------------------------------------

_X = b"\x11" * 32
_F = b"\x22" * 32
_C = b"\x33" * 32
_GOOD = Shard(
    (FileEntry(_F, (Term(_X, 0, 2, 300),), b"\x44" * 32, (b"\x55" * 32,)),), (xorb_entry(_X, [(_C, 100), (_C, 200)]),)
)


def _refuses(data: bytes, error: type[errors.ShardError], message: str) -> None:
    with pytest.raises(error) as caught:
        parse_shard(data)
    assert str(caught.value) == message
    assert caught.value.status == 400


def _good() -> bytearray:
    return bytearray(serialize_shard(_GOOD))


def test_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard, "MAX_SHARD_BYTES", 100)
    _refuses(bytes(101), errors.ShardTooLarge, "shard is 101 bytes, more than the limit of 100")


def test_truncated_header() -> None:
    _refuses(
        bytes(_good()[:20]), errors.ShardTruncated, "shard ends inside the header at byte 0: 48 bytes needed, 20 remain"
    )


def test_bad_magic() -> None:
    data = _good()
    data[0] ^= 1
    _refuses(bytes(data), errors.ShardBadMagic, "shard does not start with the MDB shard tag")


def test_unsupported_version() -> None:
    data = _good()
    data[32] = 3
    _refuses(bytes(data), errors.ShardVersionUnsupported, "shard header version 3 is not supported (only 2)")


def test_bad_footer_size() -> None:
    data = _good()
    data[40] = 7
    _refuses(
        bytes(data),
        errors.ShardFooterSizeInvalid,
        "shard header declares a 7-byte footer; only 0 (none) or 200 are valid",
    )


@pytest.mark.parametrize(
    ("cut", "error"),
    [(60, errors.ShardTruncated), (48 * 3 + 5, errors.TooManyEntries), (48 * 6 - 1, errors.ShardTruncated)],
)
def test_truncated_sections(cut: int, error: type[errors.ShardError]) -> None:
    with pytest.raises(error):
        parse_shard(bytes(_good()[:cut]))


def test_truncated_exact_message() -> None:
    _refuses(
        bytes(_good()[:60]),
        errors.ShardTruncated,
        "shard ends inside the file section at byte 48: 48 bytes needed, 12 remain",
    )


def test_trailing_bytes() -> None:
    data = bytes(_good()) + b"xx"
    _refuses(data, errors.ShardTrailingBytes, f"shard has 2 bytes after its xorb section at byte {len(data) - 2}")


def test_unknown_file_flags() -> None:
    data = _good()
    data[48 + 32] = 1
    _refuses(bytes(data), errors.UnknownFileFlags, f"file {hash_to_hex(_F)}: unknown flag bits 0xc0000001")


def test_term_count_too_large() -> None:
    data = _good()
    struct.pack_into("<I", data, 48 + 36, 1_000_000)
    _refuses(
        bytes(data),
        errors.TooManyEntries,
        f"file {hash_to_hex(_F)}: declares 2000001 entries after its header, but only 8 fit in the rest of the shard",
    )


def test_chunk_count_too_large() -> None:
    data = _good()
    xorb_at = 48 + 48 * 5
    struct.pack_into("<I", data, xorb_at + 36, 2**32 - 1)
    _refuses(
        bytes(data),
        errors.TooManyEntries,
        f"xorb {hash_to_hex(_X)}: declares 4294967295 entries after its header,"
        " but only 3 fit in the rest of the shard",
    )


def test_inverted_term() -> None:
    bad = Shard((FileEntry(_F, (Term(_X, 3, 3, 10),)),), ())
    _refuses(
        serialize_shard(bad),
        errors.InvalidTermRange,
        f"file {hash_to_hex(_F)} term 0: chunk range [3, 3) is empty or inverted",
    )


@pytest.mark.parametrize("length", [0, 2 * MAX_CHUNK + 1])
def test_term_length(length: int) -> None:
    bad = Shard((FileEntry(_F, (Term(_X, 0, 2, length),)),), ())
    _refuses(
        serialize_shard(bad),
        errors.InvalidTermLength,
        f"file {hash_to_hex(_F)} term 0: unpacked length {length} is outside 1..{2 * MAX_CHUNK}",
    )


def test_xorb_without_chunks() -> None:
    _refuses(
        serialize_shard(Shard((), (XorbEntry(_X, ()),))),
        errors.XorbEntryEmpty,
        f"xorb {hash_to_hex(_X)}: lists no chunks",
    )


def test_xorb_chunk_offset_gap() -> None:
    bad = XorbEntry(_X, (XorbChunk(_C, 0, 10), XorbChunk(_C, 11, 10)))
    _refuses(
        serialize_shard(Shard((), (bad,))),
        errors.XorbEntryChunkInvalid,
        f"xorb {hash_to_hex(_X)} chunk 1: starts at byte 11, but the chunks before it end at 10",
    )


def test_xorb_chunk_too_long() -> None:
    bad = XorbEntry(_X, (XorbChunk(_C, 0, MAX_CHUNK + 1),))
    _refuses(
        serialize_shard(Shard((), (bad,))),
        errors.XorbEntryChunkInvalid,
        f"xorb {hash_to_hex(_X)} chunk 0: length {MAX_CHUNK + 1} is outside 1..{MAX_CHUNK}",
    )


def test_xorb_size_mismatch() -> None:
    data = _good()
    struct.pack_into("<I", data, 48 + 48 * 5 + 40, 301)
    _refuses(
        bytes(data),
        errors.XorbEntrySizeMismatch,
        f"xorb {hash_to_hex(_X)}: declares 301 bytes but its chunks add up to 300",
    )


def test_duplicate_xorb() -> None:
    entry = xorb_entry(_X, [(_C, 10)])
    _refuses(
        serialize_shard(Shard((), (entry, entry))), errors.DuplicateXorbEntry, f"xorb {hash_to_hex(_X)} is listed twice"
    )


def _footed() -> bytearray:
    return bytearray(serialize_shard(_GOOD, footer=True))


def test_footer_version() -> None:
    data = _footed()
    data[-200] = 9
    _refuses(bytes(data), errors.ShardVersionUnsupported, "shard footer version 9 is not supported (only 1)")


@pytest.mark.parametrize(
    ("field", "name"),
    [
        (1, "file_info_offset"),
        (2, "xorb_info_offset"),
        (3, "file_lookup_offset"),
        (5, "xorb_lookup_offset"),
        (7, "chunk_lookup_offset"),
    ],
)
def test_footer_offsets_must_point_at_their_sections(field: int, name: str) -> None:
    data = _footed()
    at = len(data) - 200 + 8 * field
    (value,) = struct.unpack_from("<Q", data, at)
    struct.pack_into("<Q", data, at, value + 48)
    _refuses(
        bytes(data), errors.ShardFooterInvalid, f"shard footer: {name} is {value + 48}, but that section is at {value}"
    )


def test_footer_offset_past_the_end() -> None:
    data = _footed()
    struct.pack_into("<Q", data, len(data) - 8, 2**63)
    with pytest.raises(errors.ShardFooterInvalid) as caught:
        parse_shard(bytes(data))
    assert str(caught.value).startswith("shard footer: footer_offset is 9223372036854775808, but that section is at ")


def test_lookup_count_too_large() -> None:
    data = _footed()
    at = len(data) - 200 + 8 * 8  # chunk_lookup_num_entry
    struct.pack_into("<Q", data, at, 10**12)
    with pytest.raises(errors.ShardFooterInvalid):
        parse_shard(bytes(data))


def test_footer_declared_but_missing() -> None:
    data = _good()
    data[40] = 200
    _refuses(
        bytes(data[:100]), errors.ShardTruncated, "shard ends inside the footer at byte 48: 200 bytes needed, 52 remain"
    )
