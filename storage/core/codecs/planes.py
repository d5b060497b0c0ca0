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
multiple of the word size) are the tail, stored as the last plane.

A **plane buffer** is what the kernels produce and consume: the word planes back to back, each
`raw_size // word` bytes, then the tail. The per-element work is in C (`_kernels.c`); its numpy
specification, which the tests hold the kernels to, is `reference.py`.
"""

from __future__ import annotations

import numpy as np

from storage.core.codecs.base import Buffer
from storage.core.dtypes import DType

_WORDS = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def word_bytes(dtype: DType) -> int:
    """Bytes per word: a component for complex types, 1 for 1-byte and sub-byte packed types."""
    if dtype.kind == "complex":
        return dtype.bits // 16
    if not dtype.byte_aligned or dtype.bits < 8:
        return 1
    return dtype.bits // 8


def word_dtype(dtype: DType) -> np.dtype:
    """The unsigned little-endian word a dtype's bits are handled as."""
    return np.dtype(_WORDS[word_bytes(dtype) * 8]).newbyteorder("<")


def as_words(raw: Buffer, dtype: DType) -> tuple[np.ndarray, memoryview]:
    """`raw` as words (a zero-copy view) and the tail bytes that do not fill a whole word."""
    view = memoryview(raw).cast("B")
    word = word_dtype(dtype)
    whole = len(view) - len(view) % word.itemsize
    return np.frombuffer(view[:whole], dtype=word), view[whole:]


def has_sign_bit(dtype: DType) -> bool:
    """Whether a word's top bit is a float sign (sub-byte packs and E8M0's unsigned scale are not)."""
    return dtype.kind in ("float", "complex") and dtype.byte_aligned and dtype.name != "F8_E8M0"


def effective_skip(word_bits: int, skip: int) -> int:
    """The rotation actually applied: modulo the word width, and none for 1-byte words (one plane)."""
    return 0 if word_bits == 8 else skip % word_bits


def plane_sizes(word: int, raw_size: int) -> list[int]:
    """The length of each non-empty plane of `raw_size` bytes cut into `word`-byte words."""
    count, tail = divmod(raw_size, word)
    sizes = [count] * word if count else []
    return [*sizes, tail] if tail else sizes


def packed_plane_sizes(word: int, raw_size: int) -> list[int]:
    """The planes of the `packed` codec: the word planes but the last, which is stored as its top 6 bits
    (three rows of a quarter of the words, rounded up) and its low 2 bits (one such row), then the tail;
    none empty (packed.py)."""
    count, tail = divmod(raw_size, word)
    quarter = (count + 3) // 4
    sizes = [count] * (word - 1) + [3 * quarter, quarter] if count else []
    return [*sizes, tail] if tail else sizes


def plane_views(planes: Buffer, word: int, sizes: list[int] | None = None) -> list[memoryview]:
    """The non-empty planes of a plane buffer, as views into it (`sizes`: the planes' lengths when they
    are not `word` planes of whole words and a tail)."""
    view = memoryview(planes).cast("B")
    views, start = [], 0
    for size in plane_sizes(word, len(view)) if sizes is None else sizes:
        views.append(view[start : start + size])
        start += size
    return views
