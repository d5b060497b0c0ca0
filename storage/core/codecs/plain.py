"""`plain`: a tensor alone, as byte planes (see planes.py), each entropy-coded (see entropy.py).

Config: `skip` (top bits of each word left out of the first plane; 1 puts the exponent of a float there,
0 is byte grouping) and `level` (None: zstd tuned for literal coding; an int: that zstd level).

`PlaneCodec` is the pipeline every codec here shares: one kernel pass from raw bytes (and the base) to a
plane buffer, then the entropy stage per plane; decoding reverses both, the kernel writing the raw bytes
straight into the caller's buffer.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from storage.core.codecs import entropy, kernels
from storage.core.codecs.base import (
    Buffer,
    Codec,
    CorruptFrame,
    read_config,
    read_int,
    register_codec,
)
from storage.core.codecs.planes import plane_sizes, plane_views, word_bytes
from storage.core.dtypes import DType

MAX_SKIP = 56


def read_level(codec_id: str, value: Any) -> int | None:
    if value is None:
        return None
    return read_int(codec_id, value, "level", entropy.MIN_LEVEL, entropy.MAX_LEVEL)


class PlaneCodec(Codec):
    """A per-element transform to a plane buffer (a kernel), then zstd per plane."""

    level: int | None

    @abstractmethod
    def split(self, raw: memoryview, dtype: DType, base: memoryview | None) -> bytearray:
        """The plane buffer of `raw` (and `base`, for the delta codecs)."""

    @abstractmethod
    def merge(
        self, planes: Sequence[Buffer], dtype: DType, raw_size: int, base: memoryview | None, out: Buffer | None
    ) -> Buffer:
        """The raw bytes of `planes`, into `out` when given (else a new bytes)."""

    def plane_sizes(self, dtype: DType, raw_size: int) -> list[int]:
        """The length of each non-empty plane of a frame of `raw_size` bytes."""
        return plane_sizes(word_bytes(dtype), raw_size)

    def encode_parts(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> list[Buffer]:
        view = memoryview(raw).cast("B")
        base_view = self.check_base(len(view), base)
        planes = self.split(view, dtype, base_view)
        return entropy.pack_planes(plane_views(planes, 1, self.plane_sizes(dtype, len(view))), self.level)

    def encode(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
        return b"".join(self.encode_parts(raw, dtype, base))

    def decode(
        self, payload: Buffer, dtype: DType, raw_size: int, base: Buffer | None = None, *, out: Buffer | None = None
    ) -> Buffer:
        base_view = self.check_base(raw_size, base)
        if raw_size < 0:
            raise CorruptFrame(detail=f"negative raw size {raw_size}")
        planes = entropy.decode_planes(payload, self.plane_sizes(dtype, raw_size))
        return self.merge(planes, dtype, raw_size, base_view, out)


@register_codec
class PlainCodec(PlaneCodec):
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

    def split(self, raw: memoryview, dtype: DType, base: memoryview | None) -> bytearray:
        return kernels.split(raw, word_bytes(dtype), self.skip, None)

    def merge(
        self, planes: Sequence[Buffer], dtype: DType, raw_size: int, base: memoryview | None, out: Buffer | None
    ) -> Buffer:
        return kernels.merge(planes, raw_size, word_bytes(dtype), self.skip, None, out)
