"""A tensor coded against a base covering only its leading rows: lossless for every dtype and value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core import casts
from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES, DType
from storage.core.frames import decode_frame, read_frame_header
from storage.core.windows import encode_against_prefix, window_ranges
from tests.storage.core.codecs.values import dtypes, tensor_bytes

FLOAT_CASTS = [(DTYPES["F32"], DTYPES["BF16"]), (DTYPES["F32"], DTYPES["F16"]), (DTYPES["F64"], DTYPES["F32"])]


def roundtrip(raw: bytes, dtype: DType, base: bytes, base_dtype: DType, window: int) -> None:
    r = casts.ratio(base_dtype, dtype)
    shared = min(len(raw), len(base) // r) // dtype.itemsize * dtype.itemsize
    out = bytearray()
    for start, encoded in encode_against_prefix(
        lambda a, b: raw[a:b], len(raw), dtype, read_base=lambda a, b: base[a * r : b * r], base_dtype=base_dtype,
        shared=shared, window=window, frame_bytes=max(dtype.itemsize, window // 2),
    ):  # fmt: skip
        for (a, b), frame in zip(encoded.spans, encoded.frames, strict=True):
            header = read_frame_header(frame)
            lo, hi = start + a, start + b
            needs = get_codec(header.codec_id, header.config).needs_base
            assert not needs or hi <= shared, "a delta frame reached past the rows the base holds"
            window_base = base[lo * r : hi * r] if needs else None
            out += decode_frame(frame, window_base, base_dtype=base_dtype.name)
    assert bytes(out) == raw


@settings(max_examples=150, deadline=None)
@given(st.data(), dtypes, st.integers(1, 4096))
def test_grown_or_shrunk_tensors_round_trip_against_a_prefix_base(
    data: st.DataObject, dtype: DType, window: int
) -> None:
    if not dtype.byte_aligned:
        return
    raw = data.draw(tensor_bytes(dtype))
    raw = raw[: len(raw) // dtype.itemsize * dtype.itemsize]
    base = data.draw(tensor_bytes(dtype))
    base = base[: len(base) // dtype.itemsize * dtype.itemsize]
    if data.draw(st.booleans()):  # a fine-tune of the base that grew rows: mostly the base's bytes
        base = raw[: data.draw(st.integers(0, len(raw) // dtype.itemsize)) * dtype.itemsize]
    roundtrip(raw, dtype, base, dtype, window * dtype.itemsize)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from(FLOAT_CASTS), st.integers(1, 2048))
def test_a_cast_base_covering_a_prefix_round_trips(data: st.DataObject, pair: tuple[DType, DType], window: int) -> None:
    base_dtype, dtype = pair
    base = data.draw(tensor_bytes(base_dtype))
    base = base[: len(base) // base_dtype.itemsize * base_dtype.itemsize]
    grown = data.draw(tensor_bytes(dtype))
    raw = casts.predict(base, base_dtype, dtype) + grown[: len(grown) // dtype.itemsize * dtype.itemsize]
    roundtrip(raw, dtype, base, base_dtype, window * dtype.itemsize)


def test_windows_never_straddle_the_shared_prefix() -> None:
    assert window_ranges(10, 4, 6) == [(0, 4), (4, 6), (6, 10)]
    assert window_ranges(0, 4, 0) == []
    assert window_ranges(8, 4, 8) == [(0, 4), (4, 8)]
