"""`packed`: byte for byte what the numpy reference specifies, lossless on every bit pattern, and the
layout it exists for (one Huffman-coded plane on BF16 weights)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.codecs import UnknownCodec, entropy, get_codec, reference
from storage.core.codecs import base as registry
from storage.core.codecs.packed import PackedCodec
from storage.core.codecs.planes import packed_plane_sizes, plane_views
from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError
from storage.core.frames import decode_frame, encode_frame
from tests.storage.core.codecs.values import special_words

BF16, F32 = DTYPES["BF16"], DTYPES["F32"]
# Words of BF16 that break codecs: NaNs with payloads (quiet, signalling, negative), ±0, ±inf, the
# smallest and largest denormals, the largest finite, and ones.
BF16_SPECIALS = [0x7FC1, 0x7F81, 0xFFFF, 0xFFC0, 0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x007F,
                 0x7F7F, 0x3F80, 0xBF80]  # fmt: skip


@st.composite
def bf16_bytes(draw: st.DrawFn) -> bytes:
    """BF16 tensors of any length (an odd byte count leaves a tail): specials, weights, all-equal bytes,
    random bytes, and mixtures of them."""
    count = draw(st.integers(0, 700))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["specials", "weights", "equal", "random", "mixed"]))
    if kind == "specials":
        words = rng.choice(np.array(BF16_SPECIALS, np.uint16), count)
    elif kind == "weights":
        words = (rng.normal(0, 0.05, count).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    elif kind == "equal":
        byte = draw(st.integers(0, 255))
        return bytes([byte]) * (2 * count + draw(st.integers(0, 1)))
    elif kind == "random":
        return rng.bytes(2 * count + draw(st.integers(0, 1)))
    else:
        words = (rng.normal(0, 0.05, count).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        specials = rng.random(count) < 0.2
        words[specials] = rng.choice(np.array(BF16_SPECIALS, np.uint16), int(specials.sum()))
    return words.astype("<u2").tobytes() + rng.bytes(draw(st.integers(0, 1)))


@given(bf16_bytes(), st.sampled_from([0, 1, 3, 8, 15, 16, 19]), st.sampled_from([None, 1, -3]))
def test_bf16_round_trips_and_matches_the_reference(raw: bytes, skip: int, level: int | None) -> None:
    codec = PackedCodec(skip=skip, level=level)
    payload = codec.encode(raw, BF16)
    assert codec.decode(payload, BF16, len(raw)) == raw
    out = bytearray(len(raw))
    assert codec.decode(payload, BF16, len(raw), out=out) is out and out == raw
    # The planes in the payload are the reference's plane buffer, cut by the documented sizes.
    sizes = packed_plane_sizes(2, len(raw))
    planes = entropy.decode_planes(payload, sizes)
    assert b"".join(bytes(p) for p in planes) == reference.split_packed(raw, BF16, skip)
    assert reference.merge_packed(b"".join(bytes(p) for p in planes), BF16, len(raw), skip) == raw


@pytest.mark.parametrize("name", ["BF16", "F16", "F32", "F64", "U8", "F8_E5M2"])
def test_every_special_pattern_round_trips_through_a_frame(name: str) -> None:
    dtype = DTYPES[name]
    words = np.array(special_words(dtype) * 7, dtype=f"<u{max(1, dtype.itemsize)}")
    raw = words.tobytes() + b"\x01"  # and a tail
    blob = encode_frame(PackedCodec(), raw, dtype)
    assert decode_frame(blob) == raw


def test_empty_and_one_byte_tensors() -> None:
    for raw in (b"", b"\x80", b"\x00\x80", b"\x00\x80\x7f"):
        codec = PackedCodec()
        assert codec.decode(codec.encode(raw, BF16), BF16, len(raw)) == raw
        assert decode_frame(encode_frame(codec, raw, BF16)) == raw


def test_plane_sizes_follow_from_the_length() -> None:
    assert packed_plane_sizes(2, 0) == []
    assert packed_plane_sizes(2, 1) == [1]
    assert packed_plane_sizes(2, 2) == [1, 3, 1]
    assert packed_plane_sizes(2, 2 * 9 + 1) == [9, 9, 3, 1]
    assert packed_plane_sizes(4, 4 * 8) == [8, 8, 8, 6, 2]
    assert packed_plane_sizes(1, 5) == [6, 2]


def test_bf16_weights_code_one_plane_and_store_the_six_bit_plane_raw() -> None:
    # What the codec is for: on weight-like BF16 the first plane is Huffman-coded, the random 6 bits
    # (low mantissa and sign) are stored as they are, and the near-constant top exponent bits are
    # almost free; the total is no larger than plain(skip=3), which Huffman-codes both planes.
    rng = np.random.default_rng(5)
    raw = (rng.normal(0, 0.05, 300_000).astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    payload = PackedCodec(skip=3).encode(raw, BF16)
    modes = [struct.unpack_from("<BI", payload, 5 * i) for i in range(3)]
    assert [mode for mode, _ in modes] == [entropy.ZSTD, entropy.RAW, entropy.ZSTD]
    assert modes[2][1] < 0.01 * (len(raw) // 8)
    assert len(payload) <= len(get_codec("plain", {"skip": 3}).encode(raw, BF16))


def test_a_packed_frame_is_refused_cleanly_by_a_reader_without_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    # A reader that predates `packed` knows the id only as unknown: an integrity error, never bytes.
    raw = np.arange(1000, dtype="<u2").tobytes()
    blob = encode_frame(PackedCodec(), raw, BF16)
    monkeypatch.delitem(registry._REGISTRY, "packed")
    with pytest.raises(UnknownCodec) as caught:
        decode_frame(blob)
    assert isinstance(caught.value, IntegrityError)


def test_views_of_a_plane_buffer_by_size() -> None:
    buffer = bytes(range(13))
    assert [bytes(v) for v in plane_views(buffer, 1, [4, 6, 3])] == [buffer[:4], buffer[4:10], buffer[10:]]


def test_f32_weights_round_trip_at_frame_scale() -> None:
    raw = np.random.default_rng(2).normal(0, 0.02, 200_003).astype("<f4").tobytes()
    codec = PackedCodec()
    assert codec.decode(codec.encode(raw, F32), F32, len(raw)) == raw
