"""Byte planes: the bits of every element regrouped so each plane holds bits of one kind.

A tensor's elements are read as unsigned integer words (never as floats, so NaN payloads, -0 and
denormals are just bits). Each word is rotated left by `skip` bits, then cut into byte planes, most
significant first. For a float, skip=1 moves the sign to the bottom so the first plane is the top 8
exponent bits; skip=3 makes it the lower exponent bits and the top mantissa bits, and moves the sign and
the (nearly constant) top exponent bits into the last plane. skip=0 is ZipNN's byte grouping.

Why rotate: the exponent has ~2.6 bits of information in 8 bits, the sign and mantissa ~1 bit per bit;
an entropy coder per plane gains most when the low-entropy bits share a plane. Coding the top mantissa
bits (slightly skewed, correlated with the exponent) jointly with the exponent, and putting near-constant
bits into the otherwise random plane (so zstd finds it worth Huffman coding), gains a little more.
Measured on MiniLM BF16 weights (zstd literal coding): skip=0 0.671, skip=1 0.665, skip=3 0.661. A
rotation, not an arbitrary bit permutation, because it undoes in three integer operations.

Words are the element for byte-aligned types, a component for complex types, and a byte for sub-byte
packed types and 1-byte types. Bytes past the last whole word (a frame or tensor whose length is not a
multiple of the word size) are the caller's tail, kept verbatim.
"""

from __future__ import annotations

import numpy as np

from storage.codecs.base import Buffer
from storage.dtypes import DType

_WORDS = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def word_dtype(dtype: DType) -> np.dtype:
    """The unsigned little-endian word a dtype's bits are handled as."""
    if dtype.kind == "complex":
        return np.dtype(_WORDS[dtype.bits // 2]).newbyteorder("<")
    if not dtype.byte_aligned or dtype.bits < 8:
        return np.dtype(np.uint8)
    return np.dtype(_WORDS[dtype.bits]).newbyteorder("<")


def as_words(raw: Buffer, dtype: DType) -> tuple[np.ndarray, memoryview]:
    """`raw` as words (a zero-copy view) and the tail bytes that do not fill a whole word."""
    view = memoryview(raw).cast("B")
    word = word_dtype(dtype)
    whole = len(view) - len(view) % word.itemsize
    return np.frombuffer(view[:whole], dtype=word), view[whole:]


def effective_skip(word_bits: int, skip: int) -> int:
    """The rotation actually applied: modulo the word width, and none for 1-byte words (one plane)."""
    return 0 if word_bits == 8 else skip % word_bits


def rotate_left(words: np.ndarray, skip: int) -> np.ndarray:
    bits = words.dtype.itemsize * 8
    skip = effective_skip(bits, skip)
    if not skip:
        return words
    rotated = words << skip
    rotated |= words >> (bits - skip)
    return rotated


def rotate_right(words: np.ndarray, skip: int) -> np.ndarray:
    """Undo `rotate_left` in place (the argument is a scratch array the caller owns)."""
    bits = words.dtype.itemsize * 8
    skip = effective_skip(bits, skip)
    if not skip:
        return words
    low = words << (bits - skip)
    words >>= skip
    words |= low
    return words


def split_words(words: np.ndarray, skip: int) -> list[np.ndarray]:
    """The uint8 planes of `words` rotated left by `skip`, most significant first."""
    rotated = rotate_left(words, skip)
    count = rotated.dtype.itemsize
    if count == 1:
        return [rotated]
    return [(rotated >> (8 * k)).astype(np.uint8) for k in range(count - 1, 0, -1)] + [rotated.astype(np.uint8)]


def join_words(planes: list[np.ndarray], word: np.dtype, skip: int) -> np.ndarray:
    """The words that `split_words(words, skip)` cut into `planes` (all of the same length)."""
    count = word.itemsize
    if count == 1:
        return planes[0]
    out = np.empty(len(planes[0]), dtype=word)
    # ufuncs with out= and a cast dtype keep the temporaries to one word array.
    np.left_shift(planes[0], 8 * (count - 1), out=out, dtype=word)
    if count > 2:
        scratch = np.empty(len(planes[0]), dtype=word)
        for k, plane in zip(range(count - 2, 0, -1), planes[1:-1], strict=True):
            np.left_shift(plane, 8 * k, out=scratch, dtype=word)
            out |= scratch
    np.bitwise_or(out, planes[-1], out=out, dtype=word)
    return rotate_right(out, skip)
