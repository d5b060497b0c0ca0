"""Hypothesis strategies for tensor bytes: every dtype, any length, and the float values that break codecs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from storage.core.codecs.planes import word_dtype
from storage.core.dtypes import DTYPES, DType

dtypes = st.sampled_from(sorted(DTYPES.values(), key=lambda d: d.name))


def special_words(dtype: DType) -> list[int]:
    """Bit patterns of ±0, ±inf, NaNs (quiet, signalling with payload), denormals and extremes."""
    bits = word_dtype(dtype).itemsize * 8
    # Sub-byte packs and E8M0 have no sign/exponent/mantissa word: any clamped pattern is just bits.
    exponent = min(dtype.exponent_bits or 5, bits - 1)
    mantissa = bits - 1 - exponent
    sign = 1 << (bits - 1)
    exp_ones = ((1 << exponent) - 1) << mantissa
    top_mantissa = 1 << (mantissa - 1) if mantissa else 0
    patterns = [
        0,
        sign,
        exp_ones,
        sign | exp_ones,
        exp_ones | top_mantissa,
        exp_ones | 1,
        exp_ones | (top_mantissa >> 1) | 0b101 if mantissa > 3 else exp_ones | 1,
        sign | exp_ones | ((1 << mantissa) - 1),
        1,
        sign | 1,
        (1 << mantissa) - 1,
        exp_ones - (1 << mantissa) | ((1 << mantissa) - 1),
        1 << mantissa,
        (1 << bits) - 1,
    ]
    return [p & ((1 << bits) - 1) for p in patterns]


@st.composite
def tensor_bytes(draw: st.DrawFn, dtype: DType, max_words: int = 300) -> bytes:
    """Raw bytes of `dtype`: random bits, specials, weight-like floats, runs; sometimes a partial tail."""
    word = word_dtype(dtype)
    count = draw(st.integers(0, max_words))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["bits", "special", "weights", "constant", "mixed"]))
    nbits = word.itemsize * 8
    if kind == "bits":
        words = rng.integers(0, 1 << nbits, count, dtype=word.type) if nbits < 64 else rng.bytes(8 * count)
        words = np.frombuffer(bytes(words), dtype=word) if isinstance(words, bytes) else words
    elif kind == "special":
        words = rng.choice(np.array(special_words(dtype), dtype=word), count)
    elif kind == "weights":
        # Narrow exponents, random mantissas: what real weights look like.
        top = rng.integers(0, 1 << min(nbits, 8), count, dtype=np.uint64) & np.uint64(0x8F)
        low = rng.integers(0, 1 << (nbits - 8), count, dtype=np.uint64) if nbits > 8 else 0
        words = ((top | np.uint64(0x30)) << np.uint64(nbits - 8) | low).astype(word)
    elif kind == "constant":
        words = np.full(count, draw(st.integers(0, (1 << nbits) - 1)), dtype=word)
    else:
        specials = np.array(special_words(dtype), dtype=word)
        words = rng.integers(0, 256, count).astype(word)
        words[rng.random(count) < 0.3] = specials[0]
        if count:
            words[rng.integers(0, count, max(1, count // 10))] = rng.choice(specials)
    tail = draw(st.integers(0, word.itemsize - 1))
    return np.ascontiguousarray(words, dtype=word).tobytes() + rng.bytes(tail)


@st.composite
def tensor_pairs(draw: st.DrawFn, dtype: DType) -> tuple[bytes, bytes]:
    """(tensor, base) of equal length: identical, a few ulps or bits apart, or unrelated."""
    raw = draw(tensor_bytes(dtype))
    relation = draw(st.sampled_from(["identical", "ulps", "bits", "unrelated"]))
    if relation == "identical":
        return raw, raw
    if relation == "unrelated":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        return raw, rng.bytes(len(raw))
    word = word_dtype(dtype)
    whole = len(raw) - len(raw) % word.itemsize
    words = np.frombuffer(raw[:whole], dtype=word).copy()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if len(words):
        picked = rng.integers(0, len(words), max(1, len(words) // 4))
        if relation == "ulps":
            words[picked] += rng.integers(-3, 4, len(picked)).astype(word)  # wraps: still just bits
        else:
            words[picked] ^= word.type(1) << rng.integers(0, word.itemsize * 8, len(picked)).astype(word)
    return words.tobytes() + raw[whole:], raw
