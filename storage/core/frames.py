"""Frames: a tensor's bytes cut into independently decodable, self-describing, checksummed pieces.

Layout of a frame (format version 2, little-endian; see docs/codecs.md):

    magic "DHFR" | version u8 | flags u8 (0) | codec id length u8 | dtype name length u8 |
    config length u16 | base dtype length u8 | raw size u32 | payload size u32 |
    crc32 of the decoded bytes u32 | crc32 of the header u32 |
    codec id (ASCII) | dtype name (ASCII) | config (canonical JSON) | base dtype name (ASCII) | payload

The header crc covers everything before the payload (with its own field left out), so a damaged header
is reported as such; the data crc covers the decoded bytes, so any other damage is caught after decoding.

A delta frame for raw range [a, b) is decoded with the base tensor's own bytes [a·r, b·r), in the base
dtype the frame names (r = 2 for an F32 base of a BF16 frame): when that dtype differs from the frame's,
the base is first cast-predicted (storage/core/casts.py), a stage the frame records, so nothing outside
the frame decides how it decodes. Version 1 (no base dtype field) still decodes: it did not record the
cast, so the caller says which dtype the base has (the catalog's), as v1 readers did.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import zstandard

from storage.core import casts
from storage.core.codecs import Codec, CorruptFrame, get_codec, kernels
from storage.core.codecs.base import Buffer
from storage.core.codecs.choose import choose_codec
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError, InternalError

FRAME_MAGIC = b"DHFR"
# Written by this version; every version in SUPPORTED_VERSIONS still decodes.
FRAME_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})
# 4 MiB of raw bytes: big enough that zstd blocks and per-frame overhead (~40 bytes) are noise, small
# enough that a range read decodes little it does not need and frames spread over a thread pool.
DEFAULT_FRAME_BYTES = 4 << 20
MAX_FRAME_BYTES = 1 << 30

_FIXED_V1 = struct.Struct("<4sBBBBHIIII")
_FIXED_V2 = struct.Struct("<4sBBBBHBIIII")
_FIXED = {1: _FIXED_V1, 2: _FIXED_V2}
_PROBE = struct.Struct("<4sB")  # magic and version: enough to pick the layout

T = TypeVar("T")


def checksum(data: Buffer) -> int:
    """crc32 of a frame's decoded bytes: zlib's polynomial, equal to `zlib.crc32(data)`, computed by the
    kernels (~15 GB/s here against zlib's ~6; whole files are also checked by sha256)."""
    return kernels.crc32(data)


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
    # v2: the dtype the base bytes are given in (None for a codec that takes no base). v1: always None,
    # the frame does not say (see `base_dtype_for`).
    base_dtype: str | None = None

    @property
    def frame_size(self) -> int:
        return self.header_size + self.payload_size


@dataclass(frozen=True)
class EncodedTensor:
    codec_id: str
    config: dict[str, Any]
    spans: list[tuple[int, int]]
    frames: list[bytes]
    checksums: list[int]
    # The dtype of the base the delta frames were coded against (None: no base was used).
    base_dtype: str | None = None

    @property
    def raw_size(self) -> int:
        return self.spans[-1][1]

    @property
    def encoded_size(self) -> int:
        return sum(map(len, self.frames))


def frame_spans(nbytes: int, dtype: DType, frame_bytes: int = DEFAULT_FRAME_BYTES) -> list[tuple[int, int]]:
    """[start, end) raw byte ranges covering `nbytes` exactly, each but the last a whole number of elements
    of at most `frame_bytes` (at least one element). An empty tensor is one empty frame."""
    if not 0 < frame_bytes <= MAX_FRAME_BYTES:
        raise InternalError(detail=f"frame size {frame_bytes} is not in (0, {MAX_FRAME_BYTES}]")
    step = max(dtype.itemsize, frame_bytes // dtype.itemsize * dtype.itemsize)
    if nbytes == 0:
        return [(0, 0)]
    return [(start, min(start + step, nbytes)) for start in range(0, nbytes, step)]


def _canonical(config: dict[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def encode_frame(
    codec: Codec, raw: Buffer, dtype: DType, base: Buffer | None = None, *, base_dtype: DType | None = None
) -> bytes:
    """One frame of `raw`. `base` is the base's bytes for the same elements in `base_dtype` (default:
    `dtype`); a wider base is cast-predicted first, and the frame records that it was."""
    raw_view = memoryview(raw).cast("B")
    if len(raw_view) > MAX_FRAME_BYTES:
        raise InternalError(detail=f"frame of {len(raw_view)} bytes exceeds {MAX_FRAME_BYTES}")
    source = base_dtype or dtype
    predicted = _predict(base, source, dtype) if codec.needs_base and base is not None else base
    parts = codec.encode_parts(raw_view, dtype, predicted)
    return _assemble(codec, len(raw_view), dtype, parts, checksum(raw_view), source if codec.needs_base else None)


def _predict(base: Buffer, source: DType, target: DType) -> Buffer:
    if source.name == target.name:
        return base
    if not casts.can_predict(source, target):
        raise InternalError(detail=f"no cast prediction from {source.name} to {target.name}")
    return casts.predict(bytes(base), source, target)


def _assemble(
    codec: Codec, raw_size: int, dtype: DType, payload: Sequence[Buffer], crc: int, base_dtype: DType | None
) -> bytes:
    """Header and payload pieces joined once: the only copy of the payload an encode makes."""
    codec_id, dtype_name, config = codec.codec_id.encode(), dtype.name.encode(), _canonical(codec.get_config())
    base_name = base_dtype.name.encode() if base_dtype is not None else b""
    payload_size = sum(memoryview(piece).nbytes for piece in payload)
    fixed = _FIXED_V2.pack(
        FRAME_MAGIC, FRAME_VERSION, 0, len(codec_id), len(dtype_name), len(config), len(base_name),
        raw_size, payload_size, crc, 0,
    )  # fmt: skip
    variable = codec_id + dtype_name + config + base_name
    crc_at = _FIXED_V2.size - 4
    header_crc = zlib.crc32(variable, zlib.crc32(fixed[:crc_at]))
    return b"".join([fixed[:crc_at], header_crc.to_bytes(4, "little"), variable, *payload])


def frame_length(prefix: Buffer) -> int:
    """Total bytes of the frame that starts `prefix` (header and payload), read from its fixed header,
    so frames laid back to back (a pack) can be walked; the frame itself is checked when it is read."""
    view = memoryview(prefix).cast("B")
    fields = _fixed_fields(view)
    return _FIXED[fields.version].size + fields.variable_size + fields.payload_size


@dataclass(frozen=True, slots=True)
class _Fixed:
    version: int
    flags: int
    codec_len: int
    dtype_len: int
    config_len: int
    base_len: int
    raw_size: int
    payload_size: int
    data_crc: int
    header_crc: int

    @property
    def variable_size(self) -> int:
        return self.codec_len + self.dtype_len + self.config_len + self.base_len


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
        return _Fixed(version, flags, c, d, j, 0, raw, payload, crc, hcrc)
    _, _, flags, c, d, j, b, raw, payload, crc, hcrc = layout.unpack_from(view)
    return _Fixed(version, flags, c, d, j, b, raw, payload, crc, hcrc)


def read_frame_header(blob: Buffer) -> FrameHeader:
    """The parsed header of a whole frame blob; CorruptFrame unless the blob is exactly one intact frame."""
    view = memoryview(blob).cast("B")
    fixed = _fixed_fields(view)
    fixed_size = _FIXED[fixed.version].size
    flags, codec_len, dtype_len, config_len = fixed.flags, fixed.codec_len, fixed.dtype_len, fixed.config_len
    raw_size, payload_size, data_crc = fixed.raw_size, fixed.payload_size, fixed.data_crc
    header_size = fixed_size + fixed.variable_size
    if len(view) < header_size:
        raise CorruptFrame(detail="frame is truncated inside its header")
    variable = view[fixed_size:header_size]
    if zlib.crc32(variable, zlib.crc32(view[: fixed_size - 4])) != fixed.header_crc:
        raise CorruptFrame(detail="frame header checksum mismatch")
    if flags:
        raise CorruptFrame(detail=f"unknown frame flags {flags:#x}")
    if len(view) != header_size + payload_size:
        what = "truncated" if len(view) < header_size + payload_size else "followed by extra bytes"
        raise CorruptFrame(detail=f"frame is {what}: {len(view)} bytes, header says {header_size + payload_size}")
    config_end = codec_len + dtype_len + config_len
    try:
        codec_id = bytes(variable[:codec_len]).decode("ascii")
        dtype_name = bytes(variable[codec_len : codec_len + dtype_len]).decode("ascii")
        config = json.loads(bytes(variable[codec_len + dtype_len : config_end])) if config_len else {}
        base_name = bytes(variable[config_end:]).decode("ascii") if fixed.base_len else None
    except (UnicodeDecodeError, ValueError) as error:
        raise CorruptFrame(detail=f"unreadable frame header: {error}") from None
    if dtype_name not in DTYPES or not isinstance(config, dict):
        raise CorruptFrame(detail=f"bad dtype {dtype_name!r} or config in frame header")
    if base_name is not None and (
        base_name not in DTYPES or not casts.can_predict(DTYPES[base_name], DTYPES[dtype_name])
    ):
        raise CorruptFrame(detail=f"frame of {dtype_name} names base dtype {base_name!r}, which cannot predict it")
    return FrameHeader(
        fixed.version, codec_id, dtype_name, config, raw_size, payload_size, data_crc, header_size, base_name
    )


def base_dtype_for(header: FrameHeader, catalog_base_dtype: str | None) -> str:
    """The dtype a delta frame's base bytes must be given in. A v2 frame records it (and the catalog must
    agree: a disagreement is damage); a v1 frame did not, so the catalog's base dtype decides, as it did
    for v1 readers (cast-predicted whenever it differs from the frame's)."""
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
    """Base bytes per raw byte of this frame: its base range is [a·r, b·r) of the base tensor."""
    return casts.ratio(DTYPES[base_dtype_for(header, catalog_base_dtype)], DTYPES[header.dtype])


def decode_frame(
    blob: Buffer, base: Buffer | None = None, *, out: Buffer | None = None, base_dtype: str | None = None
) -> Buffer:
    """The raw bytes of one frame, checked against its length and crc; CorruptFrame if anything is off.
    `base` is the base tensor's own bytes for this frame's elements (ignored by codecs that need none):
    range [a·r, b·r) in the base's dtype, cast-predicted here when the frame says so. `base_dtype` is the
    base's dtype as the catalog records it: checked against a v2 frame, relied on for a v1 frame. With
    `out` (a writable buffer of exactly the frame's raw size) the bytes are decoded into it and it is
    returned; otherwise they are a new `bytes`."""
    header, raw = _decode(blob, base, out, base_dtype)
    if checksum(raw) != header.checksum:
        raise CorruptFrame(detail="decoded bytes fail the frame checksum")
    return raw


def _decode(
    blob: Buffer, base: Buffer | None, out: Buffer | None, base_dtype: str | None = None
) -> tuple[FrameHeader, Buffer]:
    """A frame's header and decoded bytes, every check but the data crc done."""
    header = read_frame_header(blob)
    if out is not None and memoryview(out).nbytes != header.raw_size:
        raise InternalError(detail=f"output buffer has {memoryview(out).nbytes} bytes, the frame {header.raw_size}")
    codec = get_codec(header.codec_id, header.config)
    payload = memoryview(blob).cast("B")[header.header_size :]
    if codec.needs_base:
        base = _predicted_base(header, base, base_dtype)
    elif header.base_dtype is not None:
        raise CorruptFrame(detail=f"frame names a base dtype, but codec {header.codec_id!r} takes no base")
    else:
        base = None
    try:
        raw = codec.decode(payload, DTYPES[header.dtype], header.raw_size, base, out=out)
    except (ValueError, TypeError, IndexError, OverflowError, struct.error, zstandard.ZstdError) as error:
        raise CorruptFrame(detail=f"payload does not decode: {error}") from None
    if memoryview(raw).nbytes != header.raw_size:
        raise CorruptFrame(detail=f"payload decoded to {memoryview(raw).nbytes} bytes, header says {header.raw_size}")
    return header, raw


def _predicted_base(header: FrameHeader, base: Buffer | None, catalog_base_dtype: str | None) -> Buffer:
    """The base bytes the codec sees: the given ones, cast-predicted to the frame's dtype if need be."""
    if base is None:
        raise InternalError(detail=f"codec {header.codec_id!r} needs the base tensor's bytes")
    source, target = DTYPES[base_dtype_for(header, catalog_base_dtype)], DTYPES[header.dtype]
    if source.name == target.name:
        return base
    if not casts.can_predict(source, target):
        raise IntegrityError(detail=f"a {target.name} frame cannot be predicted from a {source.name} base")
    expected = header.raw_size * casts.ratio(source, target)
    if memoryview(base).nbytes != expected:
        raise InternalError(detail=f"base has {memoryview(base).nbytes} bytes, the frame needs {expected}")
    return casts.predict(bytes(base), source, target)


def _base_window(
    blob: Buffer, base: memoryview | None, span: tuple[int, int], base_dtype: str | None
) -> memoryview | None:
    """The base bytes frame `blob` covering raw `span` decodes with: [a·r, b·r), as its header says."""
    if base is None:
        return None
    header = read_frame_header(blob)
    if not get_codec(header.codec_id, header.config).needs_base:
        return None
    r = base_ratio(header, base_dtype)
    return base[span[0] * r : span[1] * r]


def _map(function: Callable[[int], T], count: int, workers: int) -> list[T]:
    # zstd and the kernels release the GIL, so threads code frames in parallel.
    if workers <= 1 or count <= 1:
        return [function(i) for i in range(count)]
    with ThreadPoolExecutor(max_workers=min(workers, count)) as pool:
        return list(pool.map(function, range(count)))


def encode_tensor(
    raw: Buffer,
    dtype: DType,
    base: Buffer | None = None,
    *,
    base_dtype: DType | None = None,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    verify: bool = True,
    candidates: Sequence[Codec] | None = None,
    workers: int = 1,
) -> EncodedTensor:
    """Choose the smallest codec on samples, encode every frame with it, and (verify=True) decode each
    frame and compare it to the original before returning: nothing may be dropped on an unchecked encode.

    `base` is the base tensor's own bytes in `base_dtype` (default `dtype`); a wider base (F32 for a BF16
    tensor) is cast-predicted once, and its delta frames record the cast, so verify decodes them exactly
    as a reader will: from the base's own bytes."""
    view = memoryview(raw).cast("B")
    source = base_dtype or dtype
    base_view = memoryview(base).cast("B") if base is not None else None
    r = casts.ratio(source, dtype) if base_view is not None else 1
    if base_view is not None and len(base_view) != len(view) * r:
        raise InternalError(detail=f"base has {len(base_view)} bytes, the tensor needs {len(view) * r}")
    predicted = memoryview(_predict(base_view, source, dtype)).cast("B") if base_view is not None else None
    spans = frame_spans(len(view), dtype, frame_bytes)
    codec, whole_payload = choose_codec(view, dtype, predicted, candidates)
    checksums = [checksum(view[a:b]) for a, b in spans]
    recorded = source if codec.needs_base else None

    def encode(i: int) -> bytes:
        a, b = spans[i]
        parts = codec.encode_parts(view[a:b], dtype, _slice(predicted, spans[i]) if codec.needs_base else None)
        return _assemble(codec, b - a, dtype, parts, checksums[i], recorded)

    if whole_payload is not None and len(spans) == 1:
        frames = [_assemble(codec, len(view), dtype, [whole_payload], checksums[0], recorded)]  # the trial coded it all
    else:
        frames = _map(encode, len(spans), workers)
    if verify:

        def check(i: int) -> None:
            # Equal to the original implies the crc in the header matches, so the decode skips it.
            a, b = spans[i]
            window = base_view[a * r : b * r] if (codec.needs_base and base_view is not None) else None
            _, decoded = _decode(frames[i], window, kernels.empty(b - a), source.name)
            if decoded != view[a:b]:
                raise IntegrityError(detail=f"frame {i} of a {codec.codec_id} encoding does not decode back")

        _map(check, len(spans), workers)
    return EncodedTensor(
        codec.codec_id, codec.get_config(), spans, frames, checksums, recorded.name if recorded else None
    )


def covering(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the spans that overlap raw range [start, end), in order: the frames a range read needs."""
    return [i for i, (a, b) in enumerate(spans) if a < end and b > start]


def decode_frames(
    frames: Sequence[Buffer],
    spans: Sequence[tuple[int, int]],
    base: Buffer | None = None,
    *,
    base_dtype: str | None = None,
    workers: int = 1,
) -> list[Buffer]:
    """Each frame decoded, with the base's bytes for its span; frames decode in parallel with workers > 1."""
    base_view = memoryview(base).cast("B") if base is not None else None

    def decode(i: int) -> Buffer:
        window = _base_window(frames[i], base_view, spans[i], base_dtype)
        return decode_frame(frames[i], window, base_dtype=base_dtype)

    return _map(decode, len(frames), workers)


def decode_frames_into(
    frames: Sequence[Buffer],
    spans: Sequence[tuple[int, int]],
    out: Buffer,
    base: Buffer | None = None,
    *,
    base_dtype: str | None = None,
    workers: int = 1,
) -> None:
    """Decode frames straight into `out`, frame i into `out[spans[i][0] - spans[0][0] : ...]`: no
    per-frame buffers and no join. `base` is the base's own bytes for the same elements as the spans
    (from spans[0][0], times r when the frames record a cast from a wider base)."""
    if not spans:
        return
    origin, target = spans[0][0], memoryview(out).cast("B")
    if len(target) != spans[-1][1] - origin:
        raise InternalError(detail=f"output has {len(target)} bytes, the frames cover {spans[-1][1] - origin}")
    base_view = memoryview(base).cast("B") if base is not None else None

    def decode(i: int) -> None:
        a, b = spans[i][0] - origin, spans[i][1] - origin
        window = _base_window(frames[i], base_view, (a, b), base_dtype)
        decode_frame(frames[i], window, out=target[a:b], base_dtype=base_dtype)

    _map(decode, len(frames), workers)


def decode_tensor(encoded: EncodedTensor, base: Buffer | None = None, *, workers: int = 1) -> bytearray:
    """The whole tensor, every frame decoded in place into one new buffer (`base`: the base's own bytes)."""
    out = kernels.empty(encoded.raw_size)
    decode_frames_into(encoded.frames, encoded.spans, out, base, base_dtype=encoded.base_dtype, workers=workers)
    return out


def decode_tensor_range(
    frames: Sequence[Buffer],
    spans: Sequence[tuple[int, int]],
    start: int,
    end: int,
    base: Buffer | None = None,
    *,
    base_dtype: str | None = None,
    workers: int = 1,
) -> bytes:
    """Raw bytes [start, end) decoding only the frames that overlap the range (`base`: the whole base)."""
    total = spans[-1][1] if spans else 0
    if not 0 <= start <= end <= total:
        raise InternalError(detail=f"range [{start}, {end}) is outside [0, {total})")
    wanted = covering(spans, start, end)
    if not wanted:
        return b""
    covered = [spans[i] for i in wanted]
    origin = covered[0][0]
    out = kernels.empty(covered[-1][1] - origin)
    base_view = memoryview(base).cast("B") if base is not None else None
    if base_view is not None:
        # Whole base elements per raw byte: the same for every frame of one tensor.
        r = len(base_view) // total if total else 1
        base_view = base_view[origin * r : covered[-1][1] * r]
    decode_frames_into([frames[i] for i in wanted], covered, out, base_view, base_dtype=base_dtype, workers=workers)
    return bytes(memoryview(out)[start - origin : end - origin])


def _slice(view: memoryview | None, span: tuple[int, int]) -> memoryview | None:
    return view[span[0] : span[1]] if view is not None else None
