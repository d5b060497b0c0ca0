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
from storage.core.codecs.planes import (
    as_words,
    effective_skip,
    has_sign_bit,
    packed_plane_sizes,
    plane_views,
    word_dtype,
)
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


def pack_quarters(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`packed`'s two planes of the low bytes `low`: zero-padded to 4m bytes and read as 4 rows (quarters)
    of m columns, column i's 6-bit values v0..v3 (the bytes' top bits) make the 24-bit number
    v0 | v1 << 6 | v2 << 12 | v3 << 18, whose 3 bytes go to 3 rows of m bytes (the 6-bit plane), and
    its 2-bit values t0..t3 make the byte t0 | t1 << 2 | t2 << 4 | t3 << 6 (the 2-bit plane)."""
    m = (len(low) + 3) // 4
    rows = np.zeros(4 * m, np.uint32)
    rows[: len(low)] = low
    v, t = (rows >> 2).reshape(4, m), (rows & 3).reshape(4, m)
    packed = v[0] | v[1] << 6 | v[2] << 12 | v[3] << 18
    six = np.concatenate([(packed >> (8 * k)) & 0xFF for k in range(3)]).astype(np.uint8)
    two = (t[0] | t[1] << 2 | t[2] << 4 | t[3] << 6).astype(np.uint8)
    return six, two


def unpack_quarters(six: Buffer, two: Buffer, count: int) -> np.ndarray:
    """The `count` low bytes whose `pack_quarters` is (six, two)."""
    rows = np.frombuffer(six, np.uint8).astype(np.uint32).reshape(3, -1)
    packed = rows[0] | rows[1] << 8 | rows[2] << 16
    t = np.frombuffer(two, np.uint8).astype(np.uint32)
    low = np.concatenate([((packed >> (6 * q)) & 63) << 2 | (t >> (2 * q)) & 3 for q in range(4)])
    return low[:count].astype(np.uint8)


def split_packed(raw: Buffer, dtype: DType, skip: int) -> bytes:
    """`packed`: `split`'s planes (no base), the last one stored as its top 6 bits and its low 2 bits."""
    words, tail = as_words(raw, dtype)
    if not len(words):
        return bytes(tail)
    *high, low = split_words(rotate_left(words, skip))
    return _buffer([*high, *pack_quarters(low)], tail)


def merge_packed(planes: Buffer, dtype: DType, raw_size: int, skip: int) -> bytes:
    """The `raw_size` raw bytes whose `split_packed` is `planes`."""
    word = word_dtype(dtype)
    count = raw_size // word.itemsize
    views = plane_views(planes, 1, packed_plane_sizes(word.itemsize, raw_size))
    if not count:
        return bytes(views[0]) if views else b""
    high = [np.frombuffer(v, np.uint8) for v in views[: word.itemsize - 1]]
    low = unpack_quarters(views[word.itemsize - 1], views[word.itemsize], count)
    words = rotate_right(join_words([*high, low], word), skip)
    return words.tobytes() + bytes(views[word.itemsize + 1] if raw_size % word.itemsize else b"")


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
