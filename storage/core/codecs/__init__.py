"""Lossless tensor codecs. Importing this package registers every codec, so any stored id decodes."""

from storage.core.codecs import delta, packed, plain
from storage.core.codecs.base import (
    BadCodecConfig,
    Codec,
    CorruptFrame,
    UnknownCodec,
    get_codec,
    register_codec,
    registered_codecs,
)

__all__ = [
    "BadCodecConfig",
    "Codec",
    "CorruptFrame",
    "UnknownCodec",
    "delta",
    "get_codec",
    "packed",
    "plain",
    "register_codec",
    "registered_codecs",
]
