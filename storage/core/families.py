"""Families and bases: which stored model a new one is closest to, measured, never assumed.

Pure functions: the ingest job gathers the bytes (sampled tensor slices of the new file and of each
candidate) and these functions score them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.core.dtypes import DType
from storage.core.formats.base import TensorEntry
from storage.core.frames import encode_tensor

# A candidate base is used only when the delta is clearly smaller than coding the model alone; on the
# dev corpus related pairs score 0.2-0.7 and unrelated runs score 1.0 (the chooser falls back to plain).
MAX_BASE_SCORE = 0.9
# Bytes sampled per tensor and tensors sampled per model when scoring: ~2 MiB read per candidate.
SAMPLE_BYTES = 64 << 10
SAMPLE_TENSORS = 32


def fingerprint(tensors: Sequence[TensorEntry]) -> str:
    """Architecture fingerprint: SHA-256 over the sorted (name, shape) of the floating-point tensors.

    The dtype is left out on purpose: an F32 checkpoint and its BF16 release are one family, and the
    BF16 tensors are predicted from the F32 ones (storage/core/casts.py). Integer tensors are left out too:
    they are buffers (position ids, batch counters) that one export keeps and another drops, as the
    MiniLM base and its fine-tune in the dev corpus do.
    """
    items = sorted((t.name, list(t.shape)) for t in tensors if t.dtype.kind in ("float", "complex"))
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SampleSpan:
    name: str
    start: int
    end: int


def sample_spans(tensors: Sequence[TensorEntry]) -> list[SampleSpan]:
    """Deterministic slices to compare: the largest tensors, a slice from the middle of each.

    Middles avoid padding rows at the ends of embeddings; the largest tensors carry most of the bytes a
    base would save.
    """
    big = sorted((t for t in tensors if t.nbytes > 0 and t.dtype.byte_aligned), key=lambda t: (-t.nbytes, t.name))
    spans = []
    for t in big[:SAMPLE_TENSORS]:
        width = min(SAMPLE_BYTES, t.nbytes)
        width -= width % t.dtype.itemsize
        if width == 0:
            continue
        middle = (t.nbytes // 2) - (t.nbytes // 2) % t.dtype.itemsize
        start = max(0, min(middle, t.nbytes - width))
        spans.append(SampleSpan(t.name, start, start + width))
    return spans


def encoded_size(raw: bytes, dtype: DType, base: bytes | None, base_dtype: DType | None = None) -> int:
    encoded = encode_tensor(raw, dtype, base, base_dtype=base_dtype, verify=False)
    return sum(len(frame) for frame in encoded.frames)


def base_score(pairs: Sequence[tuple[bytes, bytes, DType, DType]]) -> float:
    """Encoded size against the base ÷ encoded size alone, over sampled (target, base, dtype, base dtype)
    slices; the base slice is the base's own bytes for the target's elements (cast-predicted in coding).

    1.0 means the base does not help (unrelated); smaller is closer.
    """
    alone = sum(encoded_size(t, d, None) for t, _, d, _ in pairs)
    if alone == 0:
        return 1.0
    with_base = sum(encoded_size(t, d, b, bd) for t, b, d, bd in pairs)
    return with_base / alone
