"""The numpy reference of every per-element transform: the specification the C kernels are held to.

Production encodes and decodes with `_kernels.c` (one fused pass per frame; see docs/codecs.md for why).
This module says the same thing in whole-array numpy operations, slowly and plainly; the tests check
that both produce identical plane buffers for every dtype, length and config, so the kernels can never
drift from the format. Each function takes or returns a plane buffer (planes.py): word planes, most
significant first, then the tail bytes (XORed with the base's tail when there is a base).

Every mapping is a bijection on integer words, so NaN payloads, -0, ±inf and denormals round-trip.
"""

from __future__ import annotations

import numpy as np

from storage.core.codecs.base import Buffer
from storage.core.codecs.planes import as_words, effective_skip, has_sign_bit, plane_views, word_dtype
from storage.core.dtypes import DType


def rotate_left(words: np.ndarray, skip: int) -> np.ndarray:
    bits = words.dtype.itemsize * 8
    skip = effective_skip(bits, skip)
    if not skip:
        return words
    return (words << skip) | (words >> (bits - skip))


def rotate_right(words: np.ndarray, skip: int) -> np.ndarray:
    bits = words.dtype.itemsize * 8
    skip = effective_skip(bits, skip)
    if not skip:
        return words
    return (words >> skip) | (words << (bits - skip))


def split_words(words: np.ndarray) -> list[np.ndarray]:
    """The uint8 planes of `words`, most significant byte first."""
    return [(words >> (8 * k)).astype(np.uint8) for k in range(words.dtype.itemsize - 1, -1, -1)]


def join_words(planes: list[np.ndarray], word: np.dtype) -> np.ndarray:
    """The words that `split_words` cut into `planes` (no planes: no words)."""
    if not planes:
        return np.zeros(0, dtype=word)
    out = np.zeros(len(planes[0]), dtype=word)
    for k, plane in zip(range(word.itemsize - 1, -1, -1), planes, strict=True):
        out |= plane.astype(word) << (8 * k)
    return out


def float_key(words: np.ndarray) -> np.ndarray:
    """Integers that sort like the floats whose bits `words` are (a bijection on words)."""
    bits = words.dtype.itemsize * 8
    flip = np.negative(words >> (bits - 1)) | words.dtype.type(1 << (bits - 1))
    keyed: np.ndarray = words ^ flip
    return keyed


def float_from_key(keys: np.ndarray) -> np.ndarray:
    bits = keys.dtype.itemsize * 8
    flip = np.negative((keys >> (bits - 1)) ^ keys.dtype.type(1)) | keys.dtype.type(1 << (bits - 1))
    words: np.ndarray = keys ^ flip
    return words


def zigzag(delta: np.ndarray) -> np.ndarray:
    """Small positive and negative (wrapped) differences as small unsigned numbers."""
    coded: np.ndarray = (delta << 1) ^ np.negative(delta >> (delta.dtype.itemsize * 8 - 1))
    return coded


def unzigzag(coded: np.ndarray) -> np.ndarray:
    delta: np.ndarray = (coded >> 1) ^ np.negative(coded & coded.dtype.type(1))
    return delta


def group_order(base_words: np.ndarray) -> np.ndarray:
    """A stable order of elements by the base's exponent byte (the byte just under the sign bit)."""
    bits = base_words.dtype.itemsize * 8
    context = base_words if bits == 8 else (base_words >> (bits - 9)).astype(np.uint8)
    return np.argsort(context, kind="stable")


def _buffer(planes: list[np.ndarray], tail: Buffer) -> bytes:
    return b"".join(p.tobytes() for p in planes) + bytes(tail)


def _xor(a: Buffer, b: Buffer | None) -> bytes:
    return bytes(a) if b is None else (np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()


def split(raw: Buffer, dtype: DType, skip: int, base: Buffer | None = None) -> bytes:
    """`plain` (no base) and `bitx` (XOR with the base): words rotated left by `skip`, cut into planes."""
    words, tail = as_words(raw, dtype)
    base_words, base_tail = as_words(base, dtype) if base is not None else (None, None)
    if base_words is not None:
        words = words ^ base_words
    return _buffer(split_words(rotate_left(words, skip)), _xor(tail, base_tail))


def merge(planes: Buffer, dtype: DType, skip: int, base: Buffer | None = None) -> bytes:
    """The raw bytes whose `split` is `planes`."""
    word = word_dtype(dtype)
    views = plane_views(planes, word.itemsize)
    count = len(memoryview(planes)) // word.itemsize
    arrays = [np.frombuffer(v, np.uint8) for v in views[: word.itemsize]] if count else []
    words = rotate_right(join_words(arrays, word), skip)
    tail = views[-1] if len(memoryview(planes)) % word.itemsize else b""
    base_words, base_tail = as_words(base, dtype) if base is not None else (None, None)
    if base_words is not None:
        words = words ^ base_words
    return words.tobytes() + _xor(tail, base_tail)


def split_diff(raw: Buffer, base: Buffer, dtype: DType, group: bool) -> bytes:
    """`diff`: zigzag of the wrapping difference of float keys (integers: of the words themselves),
    optionally in the stable order of the base's exponent byte, cut into planes without rotation."""
    words, tail = as_words(raw, dtype)
    base_words, base_tail = as_words(base, dtype)
    delta = float_key(words) - float_key(base_words) if has_sign_bit(dtype) else words - base_words
    coded = zigzag(delta)
    if group:
        coded = coded[group_order(base_words)]
    return _buffer(split_words(coded), _xor(tail, base_tail))


def merge_diff(planes: Buffer, base: Buffer, dtype: DType, group: bool) -> bytes:
    """The raw bytes whose `split_diff` against `base` is `planes`."""
    word = word_dtype(dtype)
    views = plane_views(planes, word.itemsize)
    count = len(memoryview(planes)) // word.itemsize
    coded = join_words([np.frombuffer(v, np.uint8) for v in views[: word.itemsize]] if count else [], word)
    base_words, base_tail = as_words(base, dtype)
    if group:
        ordered = np.empty_like(coded)
        ordered[group_order(base_words)] = coded
        coded = ordered
    delta = unzigzag(coded)
    words = float_from_key(delta + float_key(base_words)) if has_sign_bit(dtype) else delta + base_words
    tail = views[-1] if len(memoryview(planes)) % word.itemsize else b""
    return words.tobytes() + _xor(tail, base_tail)
