"""`plain`: a tensor alone, as byte planes (see planes.py), each entropy-coded (see entropy.py).

Config: `skip` (top bits of each word left out of the first plane; 1 puts the exponent of a float there,
0 is byte grouping) and `level` (None: zstd tuned for literal coding; an int: that zstd level).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from storage.codecs import entropy
from storage.codecs.base import (
    Buffer,
    Codec,
    CorruptFrame,
    read_config,
    read_int,
    register_codec,
)
from storage.codecs.planes import as_words, join_words, split_words, word_dtype
from storage.dtypes import DType

MAX_SKIP = 56


def encode_words(words: np.ndarray, tail: Buffer, skip: int, level: int | None) -> bytes:
    """The payload of `words` cut into planes, plus the tail bytes, entropy-coded."""
    planes: list[Buffer] = [*split_words(words, skip), tail] if len(words) else [tail]
    return entropy.encode_planes([p for p in planes if memoryview(p).nbytes], level)


def decode_words(payload: Buffer, word: np.dtype, raw_size: int, skip: int) -> tuple[np.ndarray, Buffer]:
    """The words and tail bytes that `encode_words` wrote for a raw size of `raw_size` bytes."""
    count, tail_size = divmod(raw_size, word.itemsize)
    sizes = [count] * word.itemsize if count else []
    if tail_size:
        sizes.append(tail_size)
    planes = entropy.decode_planes(payload, sizes)
    if not count:
        return np.empty(0, dtype=word), planes[0] if tail_size else b""
    arrays = [np.frombuffer(p, dtype=np.uint8) for p in planes[: word.itemsize]]
    return join_words(arrays, word, skip), planes[-1] if tail_size else b""


def words_to_bytes(words: np.ndarray, tail: Buffer) -> bytes:
    return words.tobytes() + bytes(tail) if len(tail) else words.tobytes()


def read_level(codec_id: str, value: Any) -> int | None:
    if value is None:
        return None
    return read_int(codec_id, value, "level", entropy.MIN_LEVEL, entropy.MAX_LEVEL)


@register_codec
class PlainCodec(Codec):
    codec_id = "plain"
    needs_base = False

    def __init__(self, skip: int = 1, level: int | None = None) -> None:
        self.skip = read_int(self.codec_id, skip, "skip", 0, MAX_SKIP)
        self.level = read_level(self.codec_id, level)

    def get_config(self) -> dict[str, Any]:
        return {"skip": self.skip, "level": self.level}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PlainCodec:
        values = read_config(cls.codec_id, config, {"skip": 1, "level": None})
        return cls(skip=values["skip"], level=values["level"])

    def encode(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
        self.check_base(memoryview(raw).nbytes, base)
        words, tail = as_words(raw, dtype)
        return encode_words(words, tail, self.skip, self.level)

    def decode(self, payload: Buffer, dtype: DType, raw_size: int, base: Buffer | None = None) -> bytes:
        self.check_base(raw_size, base)
        if raw_size < 0:
            raise CorruptFrame(detail=f"negative raw size {raw_size}")
        words, tail = decode_words(payload, word_dtype(dtype), raw_size, self.skip)
        return words_to_bytes(words, tail)
