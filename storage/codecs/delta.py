"""Delta codecs: a tensor coded against a base tensor of the same dtype and shape.

`bitx` is ZipLLM's BitX: XOR with the base, then the plain pipeline (rotated byte planes, entropy coded).

`diff` takes the arithmetic difference instead. Float bits are first mapped to integers that sort like
the floats (negative: all bits flipped; positive: sign bit set), so a small change of value is a small
integer difference even across ±0; the difference wraps modulo the word, and zigzag coding makes small
± differences small unsigned numbers, whose high planes are then nearly all zero. With `group`, the
elements are first ordered by the base element's exponent byte (the decoder knows the base, so the order
costs nothing to store): an update of a given size is many more ulps for a small weight than for a large
one, and grouping lets each zstd block's Huffman table fit one magnitude class.
Measured on the MiniLM BF16 fine-tune (sizes / tensor bytes, zstd literal coding): bitx 0.213, diff
0.182, diff+group 0.164; ZipLLM's reference (XOR, exponent and sign+mantissa streams, zstd-3) 0.219.

Every mapping here is a bijection on integer words, so NaN payloads, -0, ±inf and denormals round-trip.
Bytes past the last whole word are XORed with the base's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from storage.codecs.base import BadCodecConfig, Buffer, Codec, CorruptFrame, read_config, read_int, register_codec
from storage.codecs.plain import MAX_SKIP, decode_words, encode_words, read_level, words_to_bytes
from storage.codecs.planes import as_words, word_dtype
from storage.dtypes import DType


def _writable(words: np.ndarray) -> np.ndarray:
    # 1-byte words come back as a view of the payload; everything wider is a fresh array.
    return words if words.flags.writeable else words.copy()


def _xor_tail(tail: Buffer, base_tail: Buffer) -> bytes:
    return (np.frombuffer(tail, np.uint8) ^ np.frombuffer(base_tail, np.uint8)).tobytes()


@register_codec
class BitxCodec(Codec):
    codec_id = "bitx"
    needs_base = True

    def __init__(self, skip: int = 1, level: int | None = None) -> None:
        self.skip = read_int(self.codec_id, skip, "skip", 0, MAX_SKIP)
        self.level = read_level(self.codec_id, level)

    def get_config(self) -> dict[str, Any]:
        return {"skip": self.skip, "level": self.level}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BitxCodec:
        values = read_config(cls.codec_id, config, {"skip": 1, "level": None})
        return cls(skip=values["skip"], level=values["level"])

    def encode(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
        base_view = self.check_base(memoryview(raw).nbytes, base)
        words, tail = as_words(raw, dtype)
        base_words, base_tail = as_words(base_view, dtype)  # type: ignore[arg-type]
        return encode_words(words ^ base_words, _xor_tail(tail, base_tail), self.skip, self.level)

    def decode(self, payload: Buffer, dtype: DType, raw_size: int, base: Buffer | None = None) -> bytes:
        base_view = self.check_base(raw_size, base)
        words, tail = decode_words(payload, word_dtype(dtype), raw_size, self.skip)
        base_words, base_tail = as_words(base_view, dtype)  # type: ignore[arg-type]
        words = _writable(words)
        words ^= base_words
        return words_to_bytes(words, _xor_tail(tail, base_tail))


def has_sign_bit(dtype: DType) -> bool:
    """Whether a word's top bit is a float sign (sub-byte packs and E8M0's unsigned scale are not)."""
    return dtype.kind in ("float", "complex") and dtype.byte_aligned and dtype.name != "F8_E8M0"


def float_key(words: np.ndarray) -> np.ndarray:
    """Integers that sort like the floats whose bits `words` are (a bijection on words)."""
    top = words.dtype.type(1 << (words.dtype.itemsize * 8 - 1))
    flip = np.negative(words >> (words.dtype.itemsize * 8 - 1))
    flip |= top
    flip ^= words
    return flip


def float_from_key(keys: np.ndarray) -> np.ndarray:
    """Undo `float_key` in place."""
    bits = keys.dtype.itemsize * 8
    flip = np.negative((keys >> (bits - 1)) ^ keys.dtype.type(1))
    flip |= keys.dtype.type(1 << (bits - 1))
    keys ^= flip
    return keys


def zigzag(delta: np.ndarray) -> np.ndarray:
    """Small positive and negative (wrapped) differences as small unsigned numbers, in place."""
    sign = np.negative(delta >> (delta.dtype.itemsize * 8 - 1))
    delta <<= 1
    delta ^= sign
    return delta


def unzigzag(coded: np.ndarray) -> np.ndarray:
    sign = np.negative(coded & coded.dtype.type(1))
    coded >>= 1
    coded ^= sign
    return coded


def group_order(base_words: np.ndarray) -> np.ndarray:
    """A stable order of elements by the base's exponent byte (the byte under the sign bit)."""
    bits = base_words.dtype.itemsize * 8
    context = base_words if bits == 8 else (base_words >> (bits - 9)).astype(np.uint8)
    return np.argsort(context, kind="stable")


@register_codec
class DiffCodec(Codec):
    codec_id = "diff"
    needs_base = True

    def __init__(self, group: bool = False, level: int | None = None) -> None:
        if type(group) is not bool:
            raise BadCodecConfig(codec_id=self.codec_id, detail="group must be true or false")
        self.group = group
        self.level = read_level(self.codec_id, level)

    def get_config(self) -> dict[str, Any]:
        return {"group": self.group, "level": self.level}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DiffCodec:
        values = read_config(cls.codec_id, config, {"group": False, "level": None})
        return cls(group=values["group"], level=values["level"])

    def encode(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
        base_view = self.check_base(memoryview(raw).nbytes, base)
        words, tail = as_words(raw, dtype)
        base_words, base_tail = as_words(base_view, dtype)  # type: ignore[arg-type]
        if has_sign_bit(dtype):
            delta = float_key(words)
            delta -= float_key(base_words)
        else:
            delta = words - base_words
        coded = zigzag(delta)
        if self.group and len(coded):
            coded = coded[group_order(base_words)]
        return encode_words(coded, _xor_tail(tail, base_tail), 0, self.level)

    def decode(self, payload: Buffer, dtype: DType, raw_size: int, base: Buffer | None = None) -> bytes:
        base_view = self.check_base(raw_size, base)
        coded, tail = decode_words(payload, word_dtype(dtype), raw_size, 0)
        coded = _writable(coded)
        base_words, base_tail = as_words(base_view, dtype)  # type: ignore[arg-type]
        if len(coded) != len(base_words):
            raise CorruptFrame(detail="decoded word count differs from the base's")
        if self.group and len(coded):
            ordered = np.empty_like(coded)
            ordered[group_order(base_words)] = coded
            coded = ordered
        delta = unzigzag(coded)
        if has_sign_bit(dtype):
            delta += float_key(base_words)
            words = float_from_key(delta)
        else:
            words = delta
            words += base_words
        return words_to_bytes(words, _xor_tail(tail, base_tail))
