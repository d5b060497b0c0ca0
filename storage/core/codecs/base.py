"""The codec contract and the registry that maps stored codec ids back to codecs.

A codec turns the raw bytes of a tensor (or of one frame of it) into a payload and back. Stored data
names its codec by id and records the codec's JSON config, so whatever an earlier version wrote is decoded
by looking the id up here: ids are stable forever, and a codec's config keys keep their meaning.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from storage.core.dtypes import DType
from storage.core.errors import CorruptFrame as CorruptFrame  # re-exported: it was defined here
from storage.core.errors import InternalError

Buffer = bytes | bytearray | memoryview


class UnknownCodec(CorruptFrame):
    """unknown codec {codec_id!r}: stored data names a codec this version does not have"""


class BadCodecConfig(CorruptFrame):
    """bad config for codec {codec_id!r}: {detail}"""


class Codec(ABC):
    """A lossless tensor codec: `decode(encode(raw)) == raw` for every dtype and every byte length."""

    codec_id: ClassVar[str]
    needs_base: ClassVar[bool] = False

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The JSON-serialisable parameters; `type(self).from_config(self.get_config()) == self`."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> Codec:
        """The codec these parameters describe; raises BadCodecConfig for unknown keys or bad values."""

    @abstractmethod
    def encode(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
        """The payload for `raw` (elements of `dtype`; `base` is the same byte range of the base tensor)."""

    def encode_parts(self, raw: Buffer, dtype: DType, base: Buffer | None = None) -> list[Buffer]:
        """The payload as pieces whose concatenation is `encode(...)`, so a frame is joined only once."""
        return [self.encode(raw, dtype, base)]

    @abstractmethod
    def decode(
        self, payload: Buffer, dtype: DType, raw_size: int, base: Buffer | None = None, *, out: Buffer | None = None
    ) -> Buffer:
        """Exactly `raw_size` bytes, or CorruptFrame; never allocates much more than `raw_size`. With `out`
        (a writable buffer of `raw_size` bytes) the bytes are written there and `out` is returned;
        otherwise they are a new `bytes`."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((self.codec_id, json.dumps(self.get_config(), sort_keys=True)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()!r})"

    def check_base(self, raw_size: int, base: Buffer | None) -> memoryview | None:
        """The base as a byte view, after checking that it is given exactly when needed, at full length."""
        if not self.needs_base:
            if base is not None:
                raise InternalError(detail=f"codec {self.codec_id!r} takes no base")
            return None
        if base is None:
            raise InternalError(detail=f"codec {self.codec_id!r} needs the base tensor's bytes")
        view = memoryview(base).cast("B")
        if len(view) != raw_size:
            raise InternalError(detail=f"base has {len(view)} bytes, the data {raw_size}")
        return view


_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make `cls` decodable by its id. An id is never reused for another codec."""
    existing = _REGISTRY.get(cls.codec_id)
    if existing is not None and existing is not cls:
        raise ValueError(f"codec id {cls.codec_id!r} is already registered to {existing.__name__}")
    _REGISTRY[cls.codec_id] = cls
    return cls


def get_codec(codec_id: str, config: Mapping[str, Any] | None = None) -> Codec:
    """The registered codec `codec_id` built from `config` (its defaults when None); UnknownCodec if none."""
    cls = _REGISTRY.get(codec_id)
    if cls is None:
        raise UnknownCodec(codec_id=codec_id)
    return cls.from_config(config or {})


def registered_codecs() -> dict[str, type[Codec]]:
    return dict(_REGISTRY)


def read_config(codec_id: str, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`defaults` overlaid with `config`, refusing keys the codec does not know (a typo must not pass)."""
    if not isinstance(config, Mapping):
        raise BadCodecConfig(codec_id=codec_id, detail="config is not an object")
    unknown = set(config) - set(defaults)
    if unknown:
        raise BadCodecConfig(codec_id=codec_id, detail=f"unknown keys {sorted(unknown)}")
    return {**defaults, **config}


def read_int(codec_id: str, value: Any, name: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise BadCodecConfig(codec_id=codec_id, detail=f"{name} must be an integer in [{low}, {high}]")
    return value
