"""Frames: exact coverage, range decode, and damage that is always detected, never returned as data."""

from __future__ import annotations

import contextlib
import itertools
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from storage.core.codecs import Codec, CorruptFrame, UnknownCodec, get_codec
from storage.core.codecs.base import Buffer
from storage.core.codecs.choose import candidates_for, choose_codec, sample_ranges
from storage.core.codecs.plain import PlainCodec
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError, InternalError
from storage.core.frames import (
    FRAME_MAGIC,
    FRAME_VERSION,
    SUPPORTED_VERSIONS,
    decode_frame,
    decode_frames,
    decode_frames_into,
    decode_tensor,
    decode_tensor_range,
    encode_frame,
    encode_tensor,
    frame_spans,
    read_frame_header,
)
from tests.storage.core.codecs.values import dtypes, tensor_pairs

BF16 = DTYPES["BF16"]


@given(st.integers(0, 10_000), dtypes, st.integers(1, 5000))
def test_spans_cover_exactly_on_element_boundaries(nbytes: int, dtype, frame_bytes: int) -> None:
    spans = frame_spans(nbytes, dtype, frame_bytes)
    assert spans[0][0] == 0 and spans[-1][1] == nbytes
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(start % dtype.itemsize == 0 for start, _ in spans)
    assert all(0 < end - start <= max(frame_bytes, dtype.itemsize) for start, end in spans if nbytes)


@given(
    dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_pairs(d))),
    st.booleans(),
    st.integers(1, 300),
    st.data(),
)
def test_tensor_round_trip_and_ranges(case, with_base: bool, frame_bytes: int, data) -> None:
    dtype, (raw, base) = case
    encoded = encode_tensor(raw, dtype, base if with_base else None, frame_bytes=frame_bytes)
    assert len(encoded.frames) == len(encoded.spans) == len(encoded.checksums)
    assert encoded.raw_size == len(raw)
    assert decode_tensor(encoded, base, workers=2) == raw
    start = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(start, len(raw)))
    assert decode_tensor_range(encoded.frames, encoded.spans, start, end, base) == raw[start:end]
    header = read_frame_header(encoded.frames[0])
    assert (header.codec_id, header.config, header.dtype) == (encoded.codec_id, encoded.config, dtype.name)


def test_chooser_prefers_delta_for_a_near_copy_and_plain_for_an_unrelated_base() -> None:
    rng = np.random.default_rng(7)
    raw = (rng.normal(0, 0.02, 200_000).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    near = raw.copy()
    near[::50] += 1
    assert encode_tensor(near.tobytes(), BF16, raw.tobytes()).codec_id in ("bitx", "diff")
    unrelated = rng.integers(0, 1 << 16, raw.size, dtype=np.uint16)
    assert encode_tensor(raw.tobytes(), BF16, unrelated.tobytes()).codec_id in ("plain", "packed")


def _frame() -> tuple[bytes, bytes]:
    raw = np.random.default_rng(1).normal(0, 1, 3000).astype(np.float32).tobytes() + b"\x01"
    return encode_frame(get_codec("plain", {"skip": 3}), raw, DTYPES["F32"]), raw


def test_every_single_byte_flip_is_detected_or_harmless() -> None:
    blob, raw = _frame()
    header_size = read_frame_header(blob).header_size
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x10
        if position < header_size:
            with pytest.raises(CorruptFrame):
                decode_frame(bytes(damaged))
            continue
        with contextlib.suppress(CorruptFrame):
            assert decode_frame(bytes(damaged)) == raw  # a flip zstd never reads changes nothing


def test_truncated_and_extended_frames_are_corrupt() -> None:
    blob, _ = _frame()
    for broken in (blob[:-1], blob[:10], blob[:40], blob + b"\0", b""):
        with pytest.raises(CorruptFrame):
            decode_frame(broken)
    assert issubclass(CorruptFrame, IntegrityError)


def _craft(codec_id: bytes, dtype: bytes, config: bytes, raw_size: int, payload: bytes, crc: int = 0,
           version: int = FRAME_VERSION, base_dtype: bytes = b"") -> bytes:  # fmt: skip
    if version == 1:
        fixed = struct.pack("<4sBBBBHIII", FRAME_MAGIC, version, 0, len(codec_id), len(dtype), len(config),
                            raw_size, len(payload), crc)  # fmt: skip
    else:
        fixed = struct.pack("<4sBBBBHBIII", FRAME_MAGIC, version, 0, len(codec_id), len(dtype), len(config),
                            len(base_dtype), raw_size, len(payload), crc)  # fmt: skip
    variable = codec_id + dtype + config + base_dtype
    return fixed + zlib.crc32(variable, zlib.crc32(fixed)).to_bytes(4, "little") + variable + payload


def test_unknown_codec_and_version_are_refused() -> None:
    with pytest.raises(UnknownCodec):
        decode_frame(_craft(b"brotli", b"U8", b"", 0, b""))
    with pytest.raises(CorruptFrame, match="version"):
        decode_frame(_craft(b"plain", b"U8", b"", 0, b"", version=max(SUPPORTED_VERSIONS) + 1))
    with pytest.raises(CorruptFrame):
        decode_frame(_craft(b"plain", b"F128", b"", 0, b""))
    with pytest.raises(CorruptFrame):
        decode_frame(_craft(b"plain", b"U8", b'{"skip": "x"}', 0, b""))


def test_v2_base_dtype_field_is_checked() -> None:
    # A base dtype that cannot predict the frame's, one for a codec without a base, and a delta naming none.
    with pytest.raises(CorruptFrame, match="cannot predict"):
        decode_frame(_craft(b"bitx", b"BF16", b"", 0, b"", base_dtype=b"I32"))
    with pytest.raises(CorruptFrame, match="takes no base"):
        decode_frame(_craft(b"plain", b"BF16", b"", 0, b"", base_dtype=b"F32"))
    with pytest.raises(CorruptFrame, match="names no base dtype"):
        decode_frame(_craft(b"bitx", b"BF16", b"", 0, b""), b"")
    assert decode_frame(_craft(b"plain", b"U8", b"", 0, b"", version=1)) == b""


def test_decompression_bomb_is_refused_without_allocating_it() -> None:
    claimed = 256 << 20
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(claimed))
    no_size = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(bytes(claimed))
    tracemalloc.start()
    try:
        for plane in (bomb, no_size):
            # One U8 plane of 16 bytes that really holds 256 MiB.
            payload = struct.pack("<BI", 1, len(plane)) + plane
            with pytest.raises(CorruptFrame):
                decode_frame(_craft(b"plain", b"U8", b"", 16, payload))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_delta_frame_needs_its_base_range() -> None:
    base = np.arange(1000, dtype=np.uint16).tobytes()
    raw = (np.arange(1000, dtype=np.uint16) + 1).tobytes()
    blob = encode_frame(get_codec("diff"), raw, BF16, base)
    assert decode_frame(blob, base) == raw
    with pytest.raises(CorruptFrame):
        decode_frame(blob, bytes(len(base)))  # the wrong base cannot pass the checksum


@given(dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_pairs(d))), st.integers(1, 300))
def test_frames_decode_into_the_callers_buffer(case, frame_bytes: int) -> None:
    dtype, (raw, base) = case
    encoded = encode_tensor(raw, dtype, base, frame_bytes=frame_bytes, workers=2)  # threads: own zstd contexts
    out = bytearray(b"\x5a" * len(raw))
    decode_frames_into(encoded.frames, encoded.spans, out, base, workers=2)
    assert out == raw
    assert b"".join(decode_frames(encoded.frames, encoded.spans, base)) == raw
    a, b = encoded.spans[-1]
    target = memoryview(out)[a:b]
    assert decode_frame(encoded.frames[-1], memoryview(base)[a:b], out=target) is target


def test_decoding_into_a_wrong_sized_buffer_is_refused() -> None:
    raw = np.arange(1000, dtype=np.uint16).tobytes()
    blob = encode_frame(get_codec("plain"), raw, BF16)
    with pytest.raises(InternalError):
        decode_frame(blob, out=bytearray(len(raw) - 2))
    encoded = encode_tensor(raw, BF16, frame_bytes=600)
    with pytest.raises(InternalError):
        decode_frames_into(encoded.frames, encoded.spans, bytearray(len(raw) + 1))
    assert type(decode_frame(blob)) is bytes


class _Miscoding(PlainCodec):
    """A plain encoder that codes one byte wrong: what the write path's verify exists to catch."""

    def encode_parts(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> list[Buffer]:
        damaged = bytearray(raw)
        damaged[len(damaged) // 2] ^= 1
        return super().encode_parts(damaged, dtype, base)


def test_verify_refuses_an_encoding_that_does_not_decode_back() -> None:
    raw = np.random.default_rng(2).integers(0, 1 << 16, 3000, dtype=np.uint16).tobytes()
    with pytest.raises(IntegrityError, match="does not decode back"):
        encode_tensor(raw, BF16, candidates=[_Miscoding()], frame_bytes=2048)
    encode_tensor(raw, BF16, candidates=[_Miscoding()], frame_bytes=2048, verify=False)  # unchecked: no error


@pytest.mark.parametrize("name", ["BF16", "F32", "F16", "I32"])
def test_screening_picks_what_trying_every_candidate_on_the_full_sample_picks(name: str) -> None:
    # Weight-like tensors and fine-tunes of them, large enough to be sampled and screened.
    dtype = DTYPES[name]
    rng = np.random.default_rng(9)
    base = rng.normal(0, 0.05, 300_000).astype(np.float32)
    tuned = base + rng.normal(0, 0.002, base.size).astype(np.float32) * (rng.random(base.size) < 0.7)
    encode = {
        "BF16": lambda a: (a.view(np.uint32) >> 16).astype(np.uint16).tobytes(),
        "F16": lambda a: a.astype(np.float16).tobytes(),
        "F32": lambda a: a.tobytes(),
        "I32": lambda a: (a * 1e4).astype(np.int32).tobytes(),
    }[name]
    raw, base_raw = encode(tuned), encode(base)
    ranges = sample_ranges(len(raw), dtype.itemsize)
    sample, base_sample = (b"".join(data[a:b] for a, b in ranges) for data in (raw, base_raw))

    def sample_size(codec: Codec) -> int:
        return len(codec.encode(sample, dtype, base_sample if codec.needs_base else None))

    exhaustive = min(candidates_for(dtype, True), key=sample_size)  # the first of equals, as the chooser
    assert choose_codec(raw, dtype, base_raw)[0] == exhaustive
