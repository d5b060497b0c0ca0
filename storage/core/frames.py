"""Frames: a tensor's bytes cut into independently decodable, self-describing, checksummed pieces.

The header (versions 1-3) is written and parsed by storage/core/frameheader.py; docs/codecs.md has the
layout tables.

A delta frame for raw range [a, b) is decoded with the base tensor's own bytes [a·r, b·r), in the base
dtype the frame names (r = 2 for an F32 base of a BF16 frame): when that dtype differs from the frame's,
the base is first cast-predicted (storage/core/casts.py), a stage the frame records, so nothing outside
the frame decides how it decodes. A version 3 frame records a base layout in front of that stage: its
base elements are those of the base read as its transpose (storage/core/layouts.py), so the decoder
needs the whole base matrix (the frame's elements are a column strip of it). Version 1 (no base dtype
field) still decodes: it did not record the cast, so the caller says which dtype the base has (the
catalog's), as v1 readers did.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import zstandard

from storage.core import casts, layouts
from storage.core.codecs import Codec, CorruptFrame, get_codec, kernels
from storage.core.codecs.base import Buffer
from storage.core.codecs.choose import choose_codec
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError, InternalError
from storage.core.frameheader import (
    FRAME_MAGIC,
    FRAME_VERSION,
    LAYOUT_FRAME_VERSION,
    SUPPORTED_VERSIONS,
    FrameHeader,
    assemble,
    base_dtype_for,
    base_ratio,
    frame_length,
    read_frame_header,
)
from storage.core.layouts import Transposed

__all__ = [
    "DEFAULT_FRAME_BYTES", "FRAME_MAGIC", "FRAME_VERSION", "LAYOUT_FRAME_VERSION", "MAX_FRAME_BYTES",
    "SUPPORTED_VERSIONS", "EncodedTensor", "FrameHeader", "base_dtype_for", "base_ratio", "base_window",
    "checksum", "covering", "decode_frame", "decode_frames", "decode_frames_into", "decode_tensor",
    "decode_tensor_range", "encode_frame", "encode_tensor", "frame_length", "frame_spans", "read_frame_header",
]  # fmt: skip

# 4 MiB of raw bytes: big enough that zstd blocks and per-frame overhead (~40 bytes) are noise, small
# enough that a range read decodes little it does not need and frames spread over a thread pool.
DEFAULT_FRAME_BYTES = 4 << 20
MAX_FRAME_BYTES = 1 << 30

T = TypeVar("T")


def checksum(data: Buffer) -> int:
    """crc32 of a frame's decoded bytes: zlib's polynomial, equal to `zlib.crc32(data)`, computed by the
    kernels (~15 GB/s here against zlib's ~6; whole files are also checked by sha256)."""
    return kernels.crc32(data)


@dataclass(frozen=True)
class EncodedTensor:
    codec_id: str
    config: dict[str, Any]
    spans: list[tuple[int, int]]
    frames: list[bytes]
    checksums: list[int]
    # The dtype of the base the delta frames were coded against (None: no base was used).
    base_dtype: str | None = None
    # How the delta frames read their base (None: in place); recorded in each of them (version 3).
    layout: Transposed | None = None

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


def encode_frame(
    codec: Codec, raw: Buffer, dtype: DType, base: Buffer | None = None, *, base_dtype: DType | None = None,
    layout: Transposed | None = None,
) -> bytes:
    """One frame of `raw`. `base` is the base's bytes for the same elements in `base_dtype` (default:
    `dtype`); a wider base is cast-predicted first, and the frame records that it was. With `layout`,
    `base` holds those elements as gathered through it (`layouts.gather`) and the frame records it."""
    raw_view = memoryview(raw).cast("B")
    if len(raw_view) > MAX_FRAME_BYTES:
        raise InternalError(detail=f"frame of {len(raw_view)} bytes exceeds {MAX_FRAME_BYTES}")
    source = base_dtype or dtype
    predicted = _predict(base, source, dtype) if codec.needs_base and base is not None else base
    parts = codec.encode_parts(raw_view, dtype, predicted)
    recorded = source if codec.needs_base else None
    return assemble(codec, len(raw_view), dtype, parts, checksum(raw_view), recorded, layout)


def _predict(base: Buffer, source: DType, target: DType) -> Buffer:
    if source.name == target.name:
        return base
    if not casts.can_predict(source, target):
        raise InternalError(detail=f"no cast prediction from {source.name} to {target.name}")
    return casts.predict(bytes(base), source, target)


def decode_frame(
    blob: Buffer, base: Buffer | None = None, *, out: Buffer | None = None, base_dtype: str | None = None
) -> Buffer:
    """The raw bytes of one frame, checked against its length and crc; CorruptFrame if anything is off.
    `base` is the base tensor's own bytes for this frame's elements (ignored by codecs that need none):
    range [a·r, b·r) in the base's dtype (for a v3 frame: those elements gathered through its layout,
    `base_window`), cast-predicted here when the frame says so. `base_dtype` is the base's dtype as the
    catalog records it: checked against a v2 or v3 frame, relied on for a v1 frame. With
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


def base_window(
    header: FrameHeader, base: Buffer, span: tuple[int, int], base_dtype: str | None = None, *, whole: bool = True
) -> Buffer:
    """The base bytes the frame with `header`, covering raw `span` of its tensor, decodes with. With
    `whole`, `base` is the whole base tensor's own bytes: [a·r, b·r) of it, or for a frame recording a
    layout, the span's elements gathered from it (docs/codecs.md, "Base layouts"). Without, `base`
    holds only the base bytes for elements from `span`'s start on (in place: a range of the base)."""
    r = base_ratio(header, base_dtype)
    view = memoryview(base).cast("B")
    if header.layout is None:
        return view[span[0] * r : span[1] * r]
    if not whole:
        raise InternalError(detail="a frame with a base layout decodes from the whole base tensor")
    size = DTYPES[header.dtype].itemsize
    source = DTYPES[base_dtype_for(header, base_dtype)].itemsize
    if len(view) != header.layout.elements * source:
        raise IntegrityError(
            detail=f"frame reads a [{header.layout.rows}, {header.layout.cols}] base, the base has {len(view)} bytes"
        )
    return layouts.gather(view, header.layout, source, span[0] // size, span[1] // size)


def _base_window(
    blob: Buffer, base: memoryview | None, span: tuple[int, int], base_dtype: str | None, whole: bool = True
) -> Buffer | None:
    """The base bytes frame `blob` covering raw `span` decodes with, as its header says."""
    if base is None:
        return None
    header = read_frame_header(blob)
    if not get_codec(header.codec_id, header.config).needs_base:
        return None
    return base_window(header, base, span, base_dtype, whole=whole)


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
    layout: Transposed | None = None,
) -> EncodedTensor:
    """Choose the smallest codec on samples, encode every frame with it, and (verify=True) decode each
    frame and compare it to the original before returning: nothing may be dropped on an unchecked encode.

    `base` is the base tensor's own bytes in `base_dtype` (default `dtype`); a wider base (F32 for a BF16
    tensor) is cast-predicted once, and its delta frames record the cast, so verify decodes them exactly
    as a reader will: from the base's own bytes. With `layout`, `base` holds the base's elements in this
    tensor's order, gathered through it (`layouts.transpose`, or `gather` for a window), and the delta
    frames record the layout (version 3): a reader gathers them from the whole base."""
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
        return assemble(codec, b - a, dtype, parts, checksums[i], recorded, layout)

    if whole_payload is not None and len(spans) == 1:
        # The trial coded it all.
        frames = [assemble(codec, len(view), dtype, [whole_payload], checksums[0], recorded, layout)]
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
        codec.codec_id, codec.get_config(), spans, frames, checksums, recorded.name if recorded else None,
        layout if recorded else None,
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
    """Each frame decoded, with the base's bytes for its span (`base`: the whole base tensor's own bytes);
    frames decode in parallel with workers > 1."""
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
    (from spans[0][0], times r when the frames record a cast from a wider base); frames that read their
    base through a layout need the whole base, so spans starting at 0 (a whole tensor)."""
    whole = bool(spans) and spans[0][0] == 0
    _decode_into(frames, spans, out, base, base_dtype=base_dtype, workers=workers, whole=whole)


def _decode_into(
    frames: Sequence[Buffer], spans: Sequence[tuple[int, int]], out: Buffer, base: Buffer | None, *,
    base_dtype: str | None, workers: int, whole: bool,
) -> None:
    """`decode_frames_into`; with `whole`, `base` is the whole base tensor and windows are cut from it
    at each frame's own span (a layout's gather needs the whole matrix)."""
    if not spans:
        return
    origin, target = spans[0][0], memoryview(out).cast("B")
    if len(target) != spans[-1][1] - origin:
        raise InternalError(detail=f"output has {len(target)} bytes, the frames cover {spans[-1][1] - origin}")
    base_view = memoryview(base).cast("B") if base is not None else None

    def decode(i: int) -> None:
        a, b = spans[i][0] - origin, spans[i][1] - origin
        window = _base_window(frames[i], base_view, spans[i] if whole else (a, b), base_dtype, whole)
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
    # Each frame cuts its own window from the whole base (in place, or gathered through its layout).
    _decode_into([frames[i] for i in wanted], covered, out, base, base_dtype=base_dtype, workers=workers, whole=True)
    return bytes(memoryview(out)[start - origin : end - origin])


def _slice(view: memoryview | None, span: tuple[int, int]) -> memoryview | None:
    return view[span[0] : span[1]] if view is not None else None
