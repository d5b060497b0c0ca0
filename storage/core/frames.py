"""Frames: a tensor's bytes cut into independently decodable, self-describing, checksummed pieces.

Layout of a frame (format version 1, little-endian; see docs/codecs.md):

    magic "DHFR" | version u8 | flags u8 (0) | codec id length u8 | dtype name length u8 |
    config length u16 | raw size u32 | payload size u32 | crc32 of the decoded bytes u32 |
    crc32 of the header u32 | codec id (ASCII) | dtype name (ASCII) | config (canonical JSON) | payload

The header crc covers everything before the payload (with its own field left out), so a damaged header
is reported as such; the data crc covers the decoded bytes, so any other damage is caught after decoding.
A delta frame for raw range [a, b) is decoded with the base tensor's bytes [a, b).
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

from storage.core.codecs import Codec, CorruptFrame, get_codec, kernels
from storage.core.codecs.base import Buffer
from storage.core.codecs.choose import choose_codec
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError, InternalError

FRAME_MAGIC = b"DHFR"
FRAME_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
# 4 MiB of raw bytes: big enough that zstd blocks and per-frame overhead (~40 bytes) are noise, small
# enough that a range read decodes little it does not need and frames spread over a thread pool.
DEFAULT_FRAME_BYTES = 4 << 20
MAX_FRAME_BYTES = 1 << 30

_FIXED = struct.Struct("<4sBBBBHIIII")
_CRC_AT = _FIXED.size - 4

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


def encode_frame(codec: Codec, raw: Buffer, dtype: DType, base: Buffer | None = None) -> bytes:
    raw_view = memoryview(raw).cast("B")
    if len(raw_view) > MAX_FRAME_BYTES:
        raise InternalError(detail=f"frame of {len(raw_view)} bytes exceeds {MAX_FRAME_BYTES}")
    return _assemble(codec, len(raw_view), dtype, codec.encode_parts(raw_view, dtype, base), checksum(raw_view))


def _assemble(codec: Codec, raw_size: int, dtype: DType, payload: Sequence[Buffer], crc: int) -> bytes:
    """Header and payload pieces joined once: the only copy of the payload an encode makes."""
    codec_id, dtype_name, config = codec.codec_id.encode(), dtype.name.encode(), _canonical(codec.get_config())
    payload_size = sum(memoryview(piece).nbytes for piece in payload)
    fixed = _FIXED.pack(
        FRAME_MAGIC, FRAME_VERSION, 0, len(codec_id), len(dtype_name), len(config),
        raw_size, payload_size, crc, 0,
    )  # fmt: skip
    variable = codec_id + dtype_name + config
    header_crc = zlib.crc32(variable, zlib.crc32(fixed[:_CRC_AT]))
    return b"".join([fixed[:_CRC_AT], header_crc.to_bytes(4, "little"), variable, *payload])


def frame_length(prefix: Buffer) -> int:
    """Total bytes of the frame that starts `prefix` (header and payload), read from its fixed header,
    so frames laid back to back (a pack) can be walked; the frame itself is checked when it is read."""
    view = memoryview(prefix).cast("B")
    if len(view) < _FIXED.size:
        raise CorruptFrame(detail=f"{len(view)} bytes is shorter than a frame header")
    magic, version, _flags, codec_len, dtype_len, config_len, _raw, payload_size, _crc, _hcrc = _FIXED.unpack_from(view)
    if magic != FRAME_MAGIC or version not in SUPPORTED_VERSIONS:
        raise CorruptFrame(detail=f"no frame of a supported version here (magic {bytes(magic)!r}, version {version})")
    return _FIXED.size + codec_len + dtype_len + config_len + payload_size


def read_frame_header(blob: Buffer) -> FrameHeader:
    """The parsed header of a whole frame blob; CorruptFrame unless the blob is exactly one intact frame."""
    view = memoryview(blob).cast("B")
    if len(view) < _FIXED.size:
        raise CorruptFrame(detail=f"{len(view)} bytes is shorter than a frame header")
    magic, version, flags, codec_len, dtype_len, config_len, raw_size, payload_size, data_crc, header_crc = (
        _FIXED.unpack_from(view)
    )
    if magic != FRAME_MAGIC:
        raise CorruptFrame(detail=f"bad magic {bytes(magic)!r}")
    if version not in SUPPORTED_VERSIONS:
        raise CorruptFrame(detail=f"unsupported frame version {version}")
    header_size = _FIXED.size + codec_len + dtype_len + config_len
    if len(view) < header_size:
        raise CorruptFrame(detail="frame is truncated inside its header")
    variable = view[_FIXED.size : header_size]
    if zlib.crc32(variable, zlib.crc32(view[:_CRC_AT])) != header_crc:
        raise CorruptFrame(detail="frame header checksum mismatch")
    if flags:
        raise CorruptFrame(detail=f"unknown frame flags {flags:#x}")
    if len(view) != header_size + payload_size:
        what = "truncated" if len(view) < header_size + payload_size else "followed by extra bytes"
        raise CorruptFrame(detail=f"frame is {what}: {len(view)} bytes, header says {header_size + payload_size}")
    try:
        codec_id = bytes(variable[:codec_len]).decode("ascii")
        dtype_name = bytes(variable[codec_len : codec_len + dtype_len]).decode("ascii")
        config = json.loads(bytes(variable[codec_len + dtype_len :])) if config_len else {}
    except (UnicodeDecodeError, ValueError) as error:
        raise CorruptFrame(detail=f"unreadable frame header: {error}") from None
    if dtype_name not in DTYPES or not isinstance(config, dict):
        raise CorruptFrame(detail=f"bad dtype {dtype_name!r} or config in frame header")
    return FrameHeader(version, codec_id, dtype_name, config, raw_size, payload_size, data_crc, header_size)


def decode_frame(blob: Buffer, base: Buffer | None = None, *, out: Buffer | None = None) -> Buffer:
    """The raw bytes of one frame, checked against its length and crc; CorruptFrame if anything is off.
    `base` is the base tensor's bytes for this frame's range; ignored by codecs that need none. With `out`
    (a writable buffer of exactly the frame's raw size) the bytes are decoded into it and it is returned;
    otherwise they are a new `bytes`."""
    header, raw = _decode(blob, base, out)
    if checksum(raw) != header.checksum:
        raise CorruptFrame(detail="decoded bytes fail the frame checksum")
    return raw


def _decode(blob: Buffer, base: Buffer | None, out: Buffer | None) -> tuple[FrameHeader, Buffer]:
    """A frame's header and decoded bytes, every check but the data crc done."""
    header = read_frame_header(blob)
    if out is not None and memoryview(out).nbytes != header.raw_size:
        raise InternalError(detail=f"output buffer has {memoryview(out).nbytes} bytes, the frame {header.raw_size}")
    codec = get_codec(header.codec_id, header.config)
    payload = memoryview(blob).cast("B")[header.header_size :]
    base = base if codec.needs_base else None
    try:
        raw = codec.decode(payload, DTYPES[header.dtype], header.raw_size, base, out=out)
    except (ValueError, TypeError, IndexError, OverflowError, struct.error, zstandard.ZstdError) as error:
        raise CorruptFrame(detail=f"payload does not decode: {error}") from None
    if memoryview(raw).nbytes != header.raw_size:
        raise CorruptFrame(detail=f"payload decoded to {memoryview(raw).nbytes} bytes, header says {header.raw_size}")
    return header, raw


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
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    verify: bool = True,
    candidates: Sequence[Codec] | None = None,
    workers: int = 1,
) -> EncodedTensor:
    """Choose the smallest codec on samples, encode every frame with it, and (verify=True) decode each
    frame and compare it to the original before returning: nothing may be dropped on an unchecked encode."""
    view = memoryview(raw).cast("B")
    base_view = memoryview(base).cast("B") if base is not None else None
    if base_view is not None and len(base_view) != len(view):
        raise InternalError(detail=f"base has {len(base_view)} bytes, the tensor {len(view)}")
    spans = frame_spans(len(view), dtype, frame_bytes)
    codec, whole_payload = choose_codec(view, dtype, base_view, candidates)
    checksums = [checksum(view[a:b]) for a, b in spans]

    def base_for(i: int) -> memoryview | None:
        return _slice(base_view, spans[i]) if codec.needs_base else None

    def encode(i: int) -> bytes:
        a, b = spans[i]
        parts = codec.encode_parts(view[a:b], dtype, base_for(i))
        return _assemble(codec, b - a, dtype, parts, checksums[i])

    if whole_payload is not None and len(spans) == 1:
        frames = [_assemble(codec, len(view), dtype, [whole_payload], checksums[0])]  # the trial coded it all
    else:
        frames = _map(encode, len(spans), workers)
    if verify:

        def check(i: int) -> None:
            # Equal to the original implies the crc in the header matches, so the decode skips it.
            a, b = spans[i]
            _, decoded = _decode(frames[i], base_for(i), kernels.empty(b - a))
            if decoded != view[a:b]:
                raise IntegrityError(detail=f"frame {i} of a {codec.codec_id} encoding does not decode back")

        _map(check, len(spans), workers)
    return EncodedTensor(codec.codec_id, codec.get_config(), spans, frames, checksums)


def decode_frames(
    frames: Sequence[Buffer], spans: Sequence[tuple[int, int]], base: Buffer | None = None, *, workers: int = 1
) -> list[Buffer]:
    """Each frame decoded, with the base's bytes for its span; frames decode in parallel with workers > 1."""
    base_view = memoryview(base).cast("B") if base is not None else None
    return _map(lambda i: decode_frame(frames[i], _slice(base_view, spans[i])), len(frames), workers)


def decode_frames_into(
    frames: Sequence[Buffer],
    spans: Sequence[tuple[int, int]],
    out: Buffer,
    base: Buffer | None = None,
    *,
    workers: int = 1,
) -> None:
    """Decode frames straight into `out`, frame i into `out[spans[i][0] - spans[0][0] : ...]`: no
    per-frame buffers and no join. `base` covers the same raw range as the spans (from spans[0][0])."""
    if not spans:
        return
    origin, target = spans[0][0], memoryview(out).cast("B")
    if len(target) != spans[-1][1] - origin:
        raise InternalError(detail=f"output has {len(target)} bytes, the frames cover {spans[-1][1] - origin}")
    base_view = memoryview(base).cast("B") if base is not None else None

    def decode(i: int) -> None:
        a, b = spans[i][0] - origin, spans[i][1] - origin
        decode_frame(frames[i], _slice(base_view, (a, b)), out=target[a:b])

    _map(decode, len(frames), workers)


def decode_tensor(encoded: EncodedTensor, base: Buffer | None = None, *, workers: int = 1) -> bytearray:
    """The whole tensor, every frame decoded in place into one new buffer."""
    out = kernels.empty(encoded.raw_size)
    decode_frames_into(encoded.frames, encoded.spans, out, base, workers=workers)
    return out


def decode_tensor_range(
    frames: Sequence[Buffer],
    spans: Sequence[tuple[int, int]],
    start: int,
    end: int,
    base: Buffer | None = None,
    *,
    workers: int = 1,
) -> bytes:
    """Raw bytes [start, end) decoding only the frames that overlap the range."""
    total = spans[-1][1] if spans else 0
    if not 0 <= start <= end <= total:
        raise InternalError(detail=f"range [{start}, {end}) is outside [0, {total})")
    wanted = [i for i, (a, b) in enumerate(spans) if a < end and b > start]
    if not wanted:
        return b""
    covered = [spans[i] for i in wanted]
    out = kernels.empty(covered[-1][1] - covered[0][0])
    base_view = memoryview(base).cast("B") if base is not None else None
    decode_frames_into([frames[i] for i in wanted], covered, out, _slice(base_view, (covered[0][0], covered[-1][1])),
                       workers=workers)  # fmt: skip
    offset = covered[0][0]
    return bytes(memoryview(out)[start - offset : end - offset])


def _slice(view: memoryview | None, span: tuple[int, int]) -> memoryview | None:
    return view[span[0] : span[1]] if view is not None else None
