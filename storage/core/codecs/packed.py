"""`packed`: `plain`'s rotation and byte planes, with the last plane bit-packed so that it needs no
Huffman coding. Config: `skip` and `level`, as for `plain` (a new codec id, so readers that predate it
refuse its frames as an unknown codec instead of misreading them).

The last plane (the rotated word's low byte) is stored as two planes, its top 6 bits and its low 2
bits, laid out in quarters so the kernels read and write every row in order: with m = ceil(words / 4),
column i takes the low bytes of words i, m+i, 2m+i and 3m+i (zero past the end); the bytes of the 24-bit
v0 | v1 << 6 | v2 << 12 | v3 << 18 of their 6-bit values are three rows of m bytes (the 6-bit plane), and
t0 | t1 << 2 | t2 << 4 | t3 << 6 of their 2-bit values is one row (the 2-bit plane). Specified by
`reference.split_packed`.

With skip=3 a float's low byte is the low mantissa bits and the sign (near-random) over the top two
exponent bits (near-constant): the 6-bit plane stays raw, the 2-bit plane compresses to almost nothing,
and only the first plane (low exponent bits with the top two mantissa bits) is Huffman-coded.
`plain(skip=3)` Huffman-codes its whole low byte to save those two bits, for the same size (packed is
0.03% smaller on MiniLM BF16) and about twice the decode time (docs/codecs.md, "`packed`").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from storage.core.codecs import kernels
from storage.core.codecs.base import Buffer, read_config, read_int, register_codec
from storage.core.codecs.plain import MAX_SKIP, PlaneCodec, read_level
from storage.core.codecs.planes import packed_plane_sizes, word_bytes
from storage.core.dtypes import DType


@register_codec
class PackedCodec(PlaneCodec):
    codec_id = "packed"
    needs_base = False

    def __init__(self, skip: int = 3, level: int | None = None) -> None:
        self.skip = read_int(self.codec_id, skip, "skip", 0, MAX_SKIP)
        self.level = read_level(self.codec_id, level)

    def get_config(self) -> dict[str, Any]:
        return {"skip": self.skip, "level": self.level}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PackedCodec:
        values = read_config(cls.codec_id, config, {"skip": 3, "level": None})
        return cls(skip=values["skip"], level=values["level"])

    def plane_sizes(self, dtype: DType, raw_size: int) -> list[int]:
        return packed_plane_sizes(word_bytes(dtype), raw_size)

    def split(self, raw: memoryview, dtype: DType, base: memoryview | None) -> bytearray:
        return kernels.split_packed(raw, word_bytes(dtype), self.skip)

    def merge(
        self, planes: Sequence[Buffer], dtype: DType, raw_size: int, base: memoryview | None, out: Buffer | None
    ) -> Buffer:
        return kernels.merge_packed(planes, raw_size, word_bytes(dtype), self.skip, out)
