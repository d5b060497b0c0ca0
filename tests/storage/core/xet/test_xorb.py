"""The xorb format: round trips over every scheme, and one test per hostile-input rule."""

from __future__ import annotations

import random

import lz4.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.xet import errors, xorb
from storage.core.xet.chunking import MAX_CHUNK
from storage.core.xet.hashing import hash_to_hex
from storage.core.xet.xorb import Compression, build_xorb, parse_xorb, serialize_xorb

chunk_data = st.one_of(
    st.binary(min_size=1, max_size=3000),
    st.builds(lambda byte, size: bytes([byte]) * size, st.integers(0, 255), st.integers(1, MAX_CHUNK)),
    st.builds(lambda unit, count: unit * count, st.binary(min_size=1, max_size=7), st.integers(1, 5000)),
)
schemes = st.sampled_from([None, Compression.NONE, Compression.LZ4, Compression.BG4_LZ4])


@given(st.lists(chunk_data, min_size=1, max_size=6), schemes, st.booleans())
def test_round_trip(chunks: list[bytes], scheme: Compression | None, footer: bool) -> None:
    built = build_xorb(chunks)
    parsed = parse_xorb(serialize_xorb(built, scheme, footer), built.hash)
    assert parsed == built
    assert [chunk.data for chunk in parsed.chunks] == chunks
    assert parsed.has_footer == footer


@given(st.binary(max_size=50))
def test_bg4_regroup_inverts_split(data: bytes) -> None:
    assert xorb.bg4_regroup(xorb.bg4_split(data)) == data


def test_incompressible_chunks_are_stored_plain() -> None:
    noise = random.Random(0).randbytes(5000)
    parsed = parse_xorb(serialize_xorb([noise], Compression.LZ4))
    assert parsed.schemes == (Compression.NONE,)


def test_packed_ends_locate_each_chunk() -> None:
    data = serialize_xorb([b"a" * 5000, b"b" * 7, b"c" * 9000])
    parsed = parse_xorb(data)
    assert parsed.packed_ends[-1] == len(data)
    start = 0
    for chunk, end in zip(parsed.chunks, parsed.packed_ends, strict=True):
        assert parse_xorb(data[start:end]).chunks == (chunk,)
        start = end


# --- hostile input -----------------------------------------------------------------------------------


def _header(compressed: int, scheme: int, uncompressed: int, version: int = 0) -> bytes:
    return bytes([version]) + compressed.to_bytes(3, "little") + bytes([scheme]) + uncompressed.to_bytes(3, "little")


def _refuses(data: bytes, error: type[errors.XorbError], message: str, expected: bytes | None = None) -> None:
    with pytest.raises(error) as caught:
        parse_xorb(data, expected)
    assert str(caught.value) == message
    assert caught.value.status == 400


def test_empty() -> None:
    _refuses(b"", errors.XorbEmpty, "xorb holds no chunks")


def test_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xorb, "MAX_SERIALIZED_XORB", 100)
    _refuses(bytes(101), errors.XorbTooLarge, "xorb is 101 bytes, more than the limit of 100")


def test_truncated_header() -> None:
    good = serialize_xorb([b"abc"])
    _refuses(good + b"\0\0\0", errors.ChunkHeaderTruncated, "chunk 1 at byte 11: header needs 8 bytes but 3 remain")


def test_unsupported_version() -> None:
    _refuses(
        _header(3, 0, 3, version=1) + b"abc",
        errors.ChunkVersionUnsupported,
        "chunk 0 at byte 0: header version 1 is not supported (only 0)",
    )


def test_unknown_scheme() -> None:
    _refuses(_header(3, 7, 3) + b"abc", errors.UnknownCompression, "chunk 0 at byte 0: unknown compression scheme 7")


def test_empty_chunk() -> None:
    _refuses(_header(0, 0, 0), errors.EmptyChunk, "chunk 0 at byte 0: declares 0 uncompressed bytes")


def test_oversized_chunk() -> None:
    _refuses(
        _header(10, 1, MAX_CHUNK + 1),
        errors.ChunkTooLarge,
        f"chunk 0 at byte 0: {MAX_CHUNK + 1} uncompressed bytes, more than the limit of {MAX_CHUNK}",
    )


def test_oversized_compressed_chunk() -> None:
    _refuses(
        _header(2 * MAX_CHUNK + 1, 1, 100),
        errors.CompressedChunkTooLarge,
        f"chunk 0 at byte 0: {2 * MAX_CHUNK + 1} compressed bytes, more than the limit of {2 * MAX_CHUNK}",
    )


def test_plain_chunk_sizes_must_agree() -> None:
    _refuses(
        _header(3, 0, 4) + b"abc",
        errors.StoredChunkSizeMismatch,
        "chunk 0 at byte 0: stored uncompressed, yet declares 3 compressed and 4 uncompressed bytes",
    )


def test_truncated_chunk_data() -> None:
    _refuses(
        _header(10, 0, 10) + b"abc",
        errors.ChunkDataTruncated,
        "chunk 0 at byte 0: header declares 10 compressed bytes but 3 remain",
    )


def test_too_many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xorb, "MAX_CHUNKS", 2)
    _refuses(serialize_xorb([b"a", b"b", b"c"]), errors.TooManyChunks, "xorb holds more than 2 chunks")


def test_too_much_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xorb, "MAX_XORB_DATA", 5)
    _refuses(
        serialize_xorb([b"abc", b"def"]),
        errors.XorbDataTooLarge,
        "xorb's chunks add up to more than 5 uncompressed bytes",
    )


def test_bomb_is_refused_after_one_byte_too_many() -> None:
    # 100 KiB of zeros compresses to a few hundred bytes; declaring 1000 makes it a bomb.
    payload = lz4.frame.compress(bytes(100 << 10))
    _refuses(
        _header(len(payload), 1, 1000) + payload,
        errors.DecompressionBomb,
        "chunk 0 at byte 0: LZ4 data expands past the declared 1000 bytes",
    )


def test_bomb_in_byte_grouping() -> None:
    payload = lz4.frame.compress(bytes(100 << 10))
    _refuses(
        _header(len(payload), 2, 64) + payload,
        errors.DecompressionBomb,
        "chunk 0 at byte 0: ByteGrouping4+LZ4 data expands past the declared 64 bytes",
    )


def test_short_decompression() -> None:
    payload = lz4.frame.compress(b"abc" * 100)
    _refuses(
        _header(len(payload), 1, 301) + payload,
        errors.DecompressedSizeMismatch,
        "chunk 0 at byte 0: declares 301 uncompressed bytes but decompresses to 300",
    )


def test_garbage_lz4() -> None:
    with pytest.raises(errors.DecompressionFailed) as caught:
        parse_xorb(_header(12, 1, 50) + b"not a frame!")
    assert str(caught.value).startswith("chunk 0 at byte 0: LZ4 data does not decompress: ")


def test_truncated_lz4_frame() -> None:
    payload = lz4.frame.compress(b"abc" * 100)[:-6]
    _refuses(
        _header(len(payload), 1, 300) + payload,
        errors.DecompressionFailed,
        "chunk 0 at byte 0: LZ4 data does not decompress: truncated frame",
    )


def test_bytes_after_the_lz4_frame() -> None:
    payload = lz4.frame.compress(b"abc" * 100) + b"junk"
    _refuses(
        _header(len(payload), 1, 300) + payload,
        errors.DecompressionFailed,
        "chunk 0 at byte 0: LZ4 data does not decompress: 4 bytes after the frame",
    )


def test_hash_must_match_the_upload_url() -> None:
    built = build_xorb([b"abc", b"defg"])
    wrong = bytes(32)
    _refuses(
        serialize_xorb(built),
        errors.XorbHashMismatch,
        f"xorb hashes to {hash_to_hex(built.hash)}, not {hash_to_hex(wrong)}",
        expected=wrong,
    )


def test_a_flipped_byte_changes_the_hash() -> None:
    built = build_xorb([b"hello world" * 10])
    data = bytearray(serialize_xorb(built, Compression.NONE))
    data[20] ^= 1
    with pytest.raises(errors.XorbHashMismatch):
        parse_xorb(bytes(data), built.hash)


# --- footer ------------------------------------------------------------------------------------------

_TWO = build_xorb([b"abc" * 50, b"defg" * 30])


def _footed() -> tuple[bytearray, int]:
    data = bytearray(serialize_xorb(_TWO, Compression.NONE, footer=True))
    return data, len(serialize_xorb(_TWO, Compression.NONE))


def test_footer_bad_version() -> None:
    data, at = _footed()
    data[at + 7] = 0
    _refuses(bytes(data), errors.XorbFooterInvalid, f"xorb footer at byte {at}: footer version 0, expected 1")


def test_footer_wrong_xorb_hash() -> None:
    data, at = _footed()
    data[at + 8] ^= 1
    _refuses(
        bytes(data),
        errors.XorbFooterMismatch,
        "xorb footer disagrees with the chunks: the footer's xorb hash is not the chunks' hash",
    )


def test_footer_wrong_chunk_hash() -> None:
    data, at = _footed()
    data[at + 8 + 32 + 12 + 32] ^= 1  # the second chunk's hash
    _refuses(
        bytes(data),
        errors.XorbFooterMismatch,
        "xorb footer disagrees with the chunks: chunk 1's hash differs from its data's",
    )


def test_footer_wrong_offsets() -> None:
    data, at = _footed()
    boundaries = at + 8 + 32 + 12 + 64 + 12
    data[boundaries] ^= 1
    _refuses(
        bytes(data),
        errors.XorbFooterMismatch,
        "xorb footer disagrees with the chunks: packed chunk offsets differ from the chunks' positions",
    )


def test_footer_wrong_length() -> None:
    data, at = _footed()
    data[-4] ^= 1
    _refuses(
        bytes(data), errors.XorbFooterInvalid, f"xorb footer at byte {at}: footer length is not {len(data) - 4 - at}"
    )


def test_footer_truncated() -> None:
    data, at = _footed()
    _refuses(bytes(data[:-30]), errors.XorbFooterInvalid, f"xorb footer at byte {at}: ends inside the chunk count")


def test_bytes_after_the_footer() -> None:
    data, at = _footed()
    _refuses(bytes(data) + b"x", errors.XorbFooterInvalid, f"xorb footer at byte {at}: 1 bytes follow the footer")


def test_packed_range() -> None:
    data = serialize_xorb([b"a" * 5000, b"b" * 7, b"c" * 9000])
    ends = parse_xorb(data).packed_ends
    first, last = xorb.packed_range(ends, 1, 3)
    assert [chunk.data for chunk in parse_xorb(data[first:last]).chunks] == [b"b" * 7, b"c" * 9000]
    assert xorb.packed_range(ends, 0, 3) == (0, len(data))
    with pytest.raises(ValueError):
        xorb.packed_range(ends, 2, 2)
