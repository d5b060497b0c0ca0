"""Cast prediction (F32 → BF16/F16, F64 → F32): exact, deterministic, and lossless through the codecs."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core import casts
from storage.core.dtypes import DTYPES
from storage.core.frames import decode_tensor, encode_tensor, read_frame_header

F64, F32, F16, BF16 = (DTYPES[n] for n in ("F64", "F32", "F16", "BF16"))
SPECIAL_F32 = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC01234, 0xFF800001, 0x00000001,
               0x807FFFFF, 0x3F808000, 0x3F818000, 0x7F7FFFFF]  # fmt: skip

words32 = st.lists(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(SPECIAL_F32)), max_size=300)


def bf16_by_hand(word: int) -> int:
    """Round to nearest even on the integer bits; a NaN keeps its top payload and gets the quiet bit."""
    if word & 0x7FFFFFFF > 0x7F800000:
        return (word >> 16) | 0x40
    return ((word + 0x7FFF + ((word >> 16) & 1)) >> 16) & 0xFFFF


@given(words32)
def test_f32_to_bf16_is_round_to_nearest_even_with_nan_kept_nan(words: list[int]) -> None:
    raw = struct.pack(f"<{len(words)}I", *words)
    out = struct.unpack(f"<{len(words)}H", casts.predict(raw, F32, BF16))
    assert list(out) == [bf16_by_hand(w) for w in words]


@given(words32)
def test_f32_to_f16_is_ieee_conversion(words: list[int]) -> None:
    raw = struct.pack(f"<{len(words)}I", *words)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.frombuffer(raw, "<f4").astype("<f2")
    got = np.frombuffer(casts.predict(raw, F32, F16), "<f2")
    assert got.view("<u2").tolist() == expected.view("<u2").tolist() or np.isnan(expected).any()
    assert (np.isnan(got) == np.isnan(expected)).all()


def test_signed_zero_and_infinities_survive() -> None:
    raw = struct.pack("<4f", 0.0, -0.0, float("inf"), float("-inf"))
    assert casts.predict(raw, F32, BF16) == struct.pack("<4H", 0x0000, 0x8000, 0x7F80, 0xFF80)
    assert casts.predict(struct.pack("<2d", -0.0, 1e-310), F64, F32) == struct.pack("<2I", 0x80000000, 0)


def test_ratio_and_pairs() -> None:
    assert (casts.ratio(F32, BF16), casts.ratio(F64, F32), casts.ratio(BF16, BF16)) == (2, 2, 1)
    assert casts.can_predict(F32, BF16) and casts.can_predict(F32, F16) and casts.can_predict(F64, F32)
    assert not casts.can_predict(BF16, F32) and not casts.can_predict(DTYPES["I32"], BF16)
    assert casts.predict(b"\1\2", BF16, BF16) == b"\1\2"
    with pytest.raises(ValueError):
        casts.predict(b"\0" * 4, BF16, F32)
    with pytest.raises(ValueError):
        casts.predict(b"\0" * 6, F32, BF16)


@given(words32, st.integers(0, 2**16 - 1), st.sampled_from([BF16, F16]), st.sampled_from([64, 256, 4096]))
def test_a_cast_delta_round_trips_whatever_the_target(words: list[int], nudge: int, target: object,
                                                     frame_bytes: int) -> None:  # fmt: skip
    """Lossless even where the release was not made by this rounding: the delta carries the difference."""
    base = struct.pack(f"<{len(words)}I", *words)
    predicted = bytearray(casts.predict(base, F32, target))  # type: ignore[arg-type]
    for i in range(0, len(predicted), 7):
        predicted[i] ^= nudge & 0xFF
    raw = bytes(predicted)
    encoded = encode_tensor(raw, target, base, base_dtype=F32, frame_bytes=frame_bytes)  # type: ignore[arg-type]
    assert decode_tensor(encoded, base) == raw
    for blob in encoded.frames:
        header = read_frame_header(blob)
        assert header.version == 2
        assert header.base_dtype == ("F32" if encoded.base_dtype else None)
