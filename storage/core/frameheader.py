"""Frame headers: the self-describing part of a frame, written and parsed (versions 1, 2 and 3).

Layout of a frame (little-endian; docs/codecs.md has the tables):

    v2: magic "DHFR" | version u8 | flags u8 (0) | codec id length u8 | dtype name length u8 |
        config length u16 | base dtype length u8 | raw size u32 | payload size u32 |
        crc32 of the decoded bytes u32 | crc32 of the header u32 |
        codec id (ASCII) | dtype name (ASCII) | config (canonical JSON) | base dtype name (ASCII) | payload
    v3: v2 with a base layout kind u8 after the base dtype length, and the layout's parameters after the
        base dtype name (kind 1, transpose: the base's rows u64 and cols u64)
    v1: v2 without the base dtype length and name

The header crc covers everything before the payload (with its own field left out), so a damaged header
is reported as such; the data crc covers the decoded bytes, so any other damage is caught after decoding.
Writers write v2 for a frame whose base is read in place (or that has none) and v3 only for a frame
whose base is read through a layout: every frame that v2 could describe stays byte-identical to what v2
writers wrote, and a v2 reader keeps reading everything but the transposed deltas.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.core import casts
from storage.core.codecs import Codec, CorruptFrame
from storage.core.codecs.base import Buffer
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError
from storage.core.layouts import Transposed

FRAME_MAGIC = b"DHFR"
# Written for frames whose base (if any) is read in place; LAYOUT_FRAME_VERSION for the others. Every
# version in SUPPORTED_VERSIONS decodes.
FRAME_VERSION = 2
LAYOUT_FRAME_VERSION = 3
SUPPORTED_VERSIONS = frozenset({1, 2, 3})

_FIXED_V1 = struct.Struct("<4sBBBBHIIII")
_FIXED_V2 = struct.Struct("<4sBBBBHBIIII")
_FIXED_V3 = struct.Struct("<4sBBBBHBBIIII")
_FIXED = {1: _FIXED_V1, 2: _FIXED_V2, 3: _FIXED_V3}
_PROBE = struct.Struct("<4sB")  # magic and version: enough to pick the layout
# Base layout kinds of a v3 frame and their parameters (0 is not a kind: v3 is written only for a layout).
LAYOUT_TRANSPOSE = 1
_TRANSPOSE = struct.Struct("<QQ")
_LAYOUT_PARAMS = {LAYOUT_TRANSPOSE: _TRANSPOSE.size}


@dataclass(frozen=True)
class FrameHeader:
    version: int
    codec_id: str
    dtype: str
    config: dict[str, Any]
    raw_size: int
    payload_size: int
    checksum: int
    header_size: int
    # v2, v3: the dtype the base bytes are given in (None for a codec that takes no base). v1: always
    # None, the frame does not say (see `base_dtype_for`).
    base_dtype: str | None = None
    # v3: how the base's elements are read (None: in place, as in v1 and v2).
    layout: Transposed | None = None

    @property
    def frame_size(self) -> int:
        return self.header_size + self.payload_size


def canonical(config: dict[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def assemble(
    codec: Codec, raw_size: int, dtype: DType, payload: Sequence[Buffer], crc: int, base_dtype: DType | None,
    layout: Transposed | None = None,
) -> bytes:
    """Header and payload pieces joined once: the only copy of the payload an encode makes. A layout is
    recorded (version 3) only on a frame that takes a base."""
    codec_id, dtype_name, config = codec.codec_id.encode(), dtype.name.encode(), canonical(codec.get_config())
    base_name = base_dtype.name.encode() if base_dtype is not None else b""
    payload_size = sum(memoryview(piece).nbytes for piece in payload)
    if layout is not None and base_dtype is not None:
        fixed = _FIXED_V3.pack(
            FRAME_MAGIC, LAYOUT_FRAME_VERSION, 0, len(codec_id), len(dtype_name), len(config), len(base_name),
            LAYOUT_TRANSPOSE, raw_size, payload_size, crc, 0,
        )  # fmt: skip
        variable = codec_id + dtype_name + config + base_name + _TRANSPOSE.pack(layout.rows, layout.cols)
        crc_at = _FIXED_V3.size - 4
    else:
        fixed = _FIXED_V2.pack(
            FRAME_MAGIC, FRAME_VERSION, 0, len(codec_id), len(dtype_name), len(config), len(base_name),
            raw_size, payload_size, crc, 0,
        )  # fmt: skip
        variable = codec_id + dtype_name + config + base_name
        crc_at = _FIXED_V2.size - 4
    header_crc = zlib.crc32(variable, zlib.crc32(fixed[:crc_at]))
    return b"".join([fixed[:crc_at], header_crc.to_bytes(4, "little"), variable, *payload])


@dataclass(frozen=True, slots=True)
class _Fixed:
    version: int
    flags: int
    codec_len: int
    dtype_len: int
    config_len: int
    base_len: int
    layout_kind: int
    raw_size: int
    payload_size: int
    data_crc: int
    header_crc: int

    @property
    def layout_len(self) -> int:
        return _LAYOUT_PARAMS.get(self.layout_kind, 0)

    @property
    def variable_size(self) -> int:
        return self.codec_len + self.dtype_len + self.config_len + self.base_len + self.layout_len


def _fixed_fields(view: memoryview) -> _Fixed:
    """The fixed header of the frame at the start of `view`, in the layout of its version."""
    if len(view) < _PROBE.size:
        raise CorruptFrame(detail=f"{len(view)} bytes is shorter than a frame header")
    magic, version = _PROBE.unpack_from(view)
    if magic != FRAME_MAGIC:
        raise CorruptFrame(detail=f"bad magic {bytes(magic)!r}")
    layout = _FIXED.get(version)
    if layout is None or version not in SUPPORTED_VERSIONS:
        raise CorruptFrame(detail=f"unsupported frame version {version}")
    if len(view) < layout.size:
        raise CorruptFrame(detail=f"{len(view)} bytes is shorter than a frame header")
    if version == 1:
        _, _, flags, c, d, j, raw, payload, crc, hcrc = layout.unpack_from(view)
        return _Fixed(version, flags, c, d, j, 0, 0, raw, payload, crc, hcrc)
    if version == 2:
        _, _, flags, c, d, j, b, raw, payload, crc, hcrc = layout.unpack_from(view)
        return _Fixed(version, flags, c, d, j, b, 0, raw, payload, crc, hcrc)
    _, _, flags, c, d, j, b, kind, raw, payload, crc, hcrc = layout.unpack_from(view)
    if kind not in _LAYOUT_PARAMS:
        raise CorruptFrame(detail=f"unknown base layout {kind} in a v3 frame")
    return _Fixed(version, flags, c, d, j, b, kind, raw, payload, crc, hcrc)


def frame_length(prefix: Buffer) -> int:
    """Total bytes of the frame that starts `prefix` (header and payload), read from its fixed header,
    so frames laid back to back (a pack) can be walked; the frame itself is checked when it is read."""
    view = memoryview(prefix).cast("B")
    fields = _fixed_fields(view)
    return _FIXED[fields.version].size + fields.variable_size + fields.payload_size


def read_frame_header(blob: Buffer) -> FrameHeader:
    """The parsed header of a whole frame blob; CorruptFrame unless the blob is exactly one intact frame."""
    view = memoryview(blob).cast("B")
    fixed = _fixed_fields(view)
    fixed_size = _FIXED[fixed.version].size
    codec_len, dtype_len, config_len = fixed.codec_len, fixed.dtype_len, fixed.config_len
    header_size = fixed_size + fixed.variable_size
    if len(view) < header_size:
        raise CorruptFrame(detail="frame is truncated inside its header")
    variable = view[fixed_size:header_size]
    if zlib.crc32(variable, zlib.crc32(view[: fixed_size - 4])) != fixed.header_crc:
        raise CorruptFrame(detail="frame header checksum mismatch")
    if fixed.flags:
        raise CorruptFrame(detail=f"unknown frame flags {fixed.flags:#x}")
    if len(view) != header_size + fixed.payload_size:
        what = "truncated" if len(view) < header_size + fixed.payload_size else "followed by extra bytes"
        raise CorruptFrame(detail=f"frame is {what}: {len(view)} bytes, header says {header_size + fixed.payload_size}")
    config_end = codec_len + dtype_len + config_len
    base_end = config_end + fixed.base_len
    try:
        codec_id = bytes(variable[:codec_len]).decode("ascii")
        dtype_name = bytes(variable[codec_len : codec_len + dtype_len]).decode("ascii")
        config = json.loads(bytes(variable[codec_len + dtype_len : config_end])) if config_len else {}
        base_name = bytes(variable[config_end:base_end]).decode("ascii") if fixed.base_len else None
    except (UnicodeDecodeError, ValueError) as error:
        raise CorruptFrame(detail=f"unreadable frame header: {error}") from None
    if dtype_name not in DTYPES or not isinstance(config, dict):
        raise CorruptFrame(detail=f"bad dtype {dtype_name!r} or config in frame header")
    if base_name is not None and (
        base_name not in DTYPES or not casts.can_predict(DTYPES[base_name], DTYPES[dtype_name])
    ):
        raise CorruptFrame(detail=f"frame of {dtype_name} names base dtype {base_name!r}, which cannot predict it")
    layout = _layout(fixed, variable[base_end:], dtype_name, base_name)
    return FrameHeader(
        fixed.version, codec_id, dtype_name, config, fixed.raw_size, fixed.payload_size, fixed.data_crc,
        header_size, base_name, layout,
    )  # fmt: skip


def _layout(fixed: _Fixed, params: memoryview, dtype_name: str, base_name: str | None) -> Transposed | None:
    """A v3 frame's base layout, checked: it needs a base, and must hold at least the frame's elements."""
    if fixed.layout_kind == 0:
        return None
    rows, cols = _TRANSPOSE.unpack(params)
    if base_name is None:
        raise CorruptFrame(detail="frame records a base layout but names no base dtype")
    dtype = DTYPES[dtype_name]
    if fixed.raw_size % dtype.itemsize or fixed.raw_size // dtype.itemsize > rows * cols:
        raise CorruptFrame(detail=f"a {fixed.raw_size}-byte {dtype_name} frame cannot lie in a [{rows}, {cols}] base")
    return Transposed(rows, cols)


def base_dtype_for(header: FrameHeader, catalog_base_dtype: str | None) -> str:
    """The dtype a delta frame's base bytes must be given in. A v2 or v3 frame records it (and the
    catalog must agree: a disagreement is damage); a v1 frame did not, so the catalog's base dtype
    decides, as it did for v1 readers (cast-predicted whenever it differs from the frame's)."""
    if header.version >= 2:
        if header.base_dtype is None:
            raise CorruptFrame(detail=f"delta frame ({header.codec_id}) names no base dtype")
        if catalog_base_dtype is not None and catalog_base_dtype != header.base_dtype:
            raise IntegrityError(
                detail=f"frame was coded against a {header.base_dtype} base, the catalog's base is {catalog_base_dtype}"
            )
        return header.base_dtype
    return catalog_base_dtype or header.dtype


def base_ratio(header: FrameHeader, catalog_base_dtype: str | None) -> int:
    """Base bytes per raw byte of this frame: its base range is [a·r, b·r) of the base tensor (read
    through the frame's layout, if it records one)."""
    return casts.ratio(DTYPES[base_dtype_for(header, catalog_base_dtype)], DTYPES[header.dtype])
