"""Reference codecs deltahub is measured against, side by side in the same process.

- zstd level 3 on the raw bytes;
- ZipNN (byte grouping + Huffman), one thread, on the bytes with the matching dtype;
- ZipLLM's BitX as published: XOR with the declared base, then an exponent byte stream and a
  sign+mantissa byte stream, each zstd level 3.
Each reference is a pair of functions: encode(raw, base) -> object, decode(object, base) -> bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import zstandard

Encode = Callable[[bytes, bytes | None], Any]
Decode = Callable[[Any, bytes | None], bytes]

ZIPNN_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def zstd_raw(level: int = 3) -> tuple[Encode, Decode]:
    cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
    return (lambda raw, base: cctx.compress(raw)), (lambda blob, base: dctx.decompress(blob))


def zipnn(dtype_name: str, delta: bool = False) -> tuple[Encode, Decode]:
    """ZipNN on bytes, threads=1 for a per-core number. Its plain compress overwrites its input, even a
    `bytes` object, so the bench hands it a copy made outside the timed region (`ZIPNN_PREPARE`); in
    delta mode it XORs into a new buffer and leaves both inputs alone, so it gets them as they are."""
    from zipnn import ZipNN

    options: dict[str, Any] = {"input_format": "byte", "bytearray_dtype": ZIPNN_DTYPES[dtype_name], "threads": 1}
    if delta:
        options["delta_compressed_type"] = "byte"
    codec = ZipNN(**options)
    if delta:
        return (
            lambda raw, base: codec.compress(raw, delta_second_data=base),
            lambda blob, base: codec.decompress(blob, delta_second_data=base),
        )
    return (lambda raw, base: codec.compress(raw)), (lambda blob, base: codec.decompress(blob))


# What the bench does, untimed, to a tensor before ZipNN's plain compress may overwrite it.
ZIPNN_PREPARE = bytearray


def _split(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZipLLM's two streams: the exponent byte, and sign+mantissa (1 byte for BF16, 3 for F32)."""
    if words.dtype == np.uint16:
        exponent = (words >> 7).astype(np.uint8)
        sign_mantissa = ((words >> 8) & 0x80 | words & 0x7F).astype(np.uint8)
        return exponent, sign_mantissa
    exponent = (words >> 23).astype(np.uint8)
    rest = (words >> 31 << 23 | words & 0x7FFFFF).astype(np.uint32)
    return exponent, rest.view(np.uint8).reshape(-1, 4)[:, :3].copy()


def _join(exponent: np.ndarray, sign_mantissa: np.ndarray, word: type) -> np.ndarray:
    if word is np.uint16:
        e, m = exponent.astype(np.uint16), sign_mantissa.astype(np.uint16)
        return (m & 0x80) << 8 | e << 7 | m & 0x7F
    padded = np.zeros((len(exponent), 4), dtype=np.uint8)
    padded[:, :3] = sign_mantissa.reshape(-1, 3)
    rest = padded.view(np.uint32).ravel()
    return rest >> 23 << 31 | exponent.astype(np.uint32) << 23 | rest & 0x7FFFFF


def zipllm_bitx(dtype_name: str, level: int = 3) -> tuple[Encode, Decode]:
    word = {"BF16": np.uint16, "F32": np.uint32}[dtype_name]
    cctx, dctx = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()

    def encode(raw: bytes, base: bytes | None) -> tuple[bytes, bytes]:
        assert base is not None
        exponent, sign_mantissa = _split(np.frombuffer(raw, word) ^ np.frombuffer(base, word))
        return cctx.compress(exponent), cctx.compress(sign_mantissa)

    def decode(blob: tuple[bytes, bytes], base: bytes | None) -> bytes:
        assert base is not None
        exponent = np.frombuffer(dctx.decompress(blob[0]), np.uint8)
        sign_mantissa = np.frombuffer(dctx.decompress(blob[1]), np.uint8)
        return (_join(exponent, sign_mantissa, word) ^ np.frombuffer(base, word)).tobytes()

    return encode, decode


def encoded_size(blob: Any) -> int:
    if isinstance(blob, tuple):
        return sum(map(len, blob))
    return len(blob)
