"""The format v1 frame writer, kept for the golden files only: production writes v2 (storage/core/frames.py).

It is proven to be the v1 writer by reproducing every committed v1 golden frame byte for byte
(tests/storage/core/test_golden.py), so the v1 frames it writes for inputs v1 had no golden file for
(the cast-predicted deltas of golden/v1-cast/) are the bytes a v1 deployment stored.
"""

from __future__ import annotations

import json
import struct
import zlib

from storage.core import casts
from storage.core.codecs import Codec
from storage.core.dtypes import DType

_FIXED_V1 = struct.Struct("<4sBBBBHIIII")


def encode_frame_v1(
    codec: Codec, raw: bytes, dtype: DType, base: bytes | None = None, *, base_dtype: DType | None = None
) -> bytes:
    """A v1 frame. A v1 writer handed the codec the base already cast-predicted and recorded nothing."""
    if base is not None and base_dtype is not None and base_dtype.name != dtype.name:
        base = casts.predict(base, base_dtype, dtype)
    payload = b"".join(bytes(piece) for piece in codec.encode_parts(raw, dtype, base if codec.needs_base else None))
    codec_id, dtype_name = codec.codec_id.encode(), dtype.name.encode()
    config = json.dumps(codec.get_config(), sort_keys=True, separators=(",", ":")).encode()
    fixed = _FIXED_V1.pack(b"DHFR", 1, 0, len(codec_id), len(dtype_name), len(config), len(raw), len(payload),
                           zlib.crc32(raw), 0)  # fmt: skip
    variable = codec_id + dtype_name + config
    header_crc = zlib.crc32(variable, zlib.crc32(fixed[:-4]))
    return fixed[:-4] + header_crc.to_bytes(4, "little") + variable + payload
