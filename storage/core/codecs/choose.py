"""Choosing a codec per tensor by encoded size, measured on samples of the tensor itself.

The estimate is honest in the sense that matters: each candidate encodes the very same sampled bytes
with its real encoder, and the smallest wins; nothing is predicted from statistics. A tensor small
enough to be one sample is encoded whole by every candidate, so its choice is exact (and the winner's
payload is kept).

The sampled slices are joined and encoded as one buffer, as a frame would be: encoded separately, each
slice paid its own zstd Huffman tables, which penalised the two-table `plain(skip=3)` enough to flip its
choice on small samples. Joined, the choice on the dev corpus is the same at 1/32 of a tensor (32 KiB to
256 KiB) as it was at 1/16 (128 KiB to 512 KiB), for half the sampling work (docs/codecs.md, "Chooser").

With more than two candidates (the delta family and the plain fallback), a screening round on a quarter
of the sample drops every candidate more than SCREEN_MARGIN larger than the best before the full sample
is coded: on fine-tunes `plain` is 2-4x and `bitx` ~1.3x the best `diff`, so only the two `diff`
variants go on. A candidate within the margin is never dropped, so a close call is still decided on the
full sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.core.codecs.base import Buffer, Codec
from storage.core.codecs.delta import BitxCodec, DiffCodec
from storage.core.codecs.packed import PackedCodec
from storage.core.codecs.plain import PlainCodec
from storage.core.dtypes import DType

# Sampling budget per candidate: 1/32 of the tensor, between 32 KiB and 256 KiB, from 4 evenly spaced
# slices (so a tensor whose start differs from its middle is seen whole).
SAMPLE_FRACTION = 32
MIN_SAMPLE_BYTES = 32 << 10
MAX_SAMPLE_BYTES = 256 << 10
SAMPLE_SLICES = 4
# Screening: a quarter of the sample, and how much larger than the best a candidate may be to go on.
SCREEN_FRACTION = 4
SCREEN_MARGIN = 1.2


def plain_candidates(dtype: DType) -> list[Codec]:
    """skip=1 puts a float's exponent in the first plane; `packed` with skip=3 the lower exponent and top
    mantissa bits, ~0.6% smaller on BF16 weights, and with one Huffman-coded plane like skip=1 (so as
    fast to decode). It replaced `plain(skip=3)`, which is as small but Huffman-codes both planes
    (measured: no MiniLM tensor where plain(skip=3) was smaller; docs/codecs.md, "Measured").
    Integers and 1-byte words have no exponent to align: byte grouping only."""
    if dtype.kind not in ("float", "complex") or dtype.itemsize == 1 or not dtype.byte_aligned:
        return [PlainCodec(skip=0)]
    return [PlainCodec(skip=1), PackedCodec(skip=3)]


def delta_candidates(dtype: DType) -> list[Codec]:
    return [BitxCodec(skip=1 if dtype.kind in ("float", "complex") else 0), DiffCodec(), DiffCodec(group=True)]


def candidates_for(dtype: DType, with_base: bool) -> list[Codec]:
    """Every codec worth trying: the delta family against a base, and the plain family always (a base
    that turns out unrelated must not make a tensor bigger than coding it alone)."""
    return [*delta_candidates(dtype), *plain_candidates(dtype)] if with_base else plain_candidates(dtype)


def sample_ranges(nbytes: int, itemsize: int, budget: int | None = None) -> list[tuple[int, int]]:
    """Evenly spaced, element-aligned byte ranges totalling about `budget` (default: the sampling
    budget for a tensor of `nbytes`)."""
    if budget is None:
        budget = min(MAX_SAMPLE_BYTES, max(MIN_SAMPLE_BYTES, nbytes // SAMPLE_FRACTION))
    if nbytes <= budget:
        return [(0, nbytes)]
    size = max(itemsize, budget // SAMPLE_SLICES // itemsize * itemsize)
    last_start = (nbytes - size) // itemsize * itemsize
    starts = sorted({last_start * i // (SAMPLE_SLICES - 1) // itemsize * itemsize for i in range(SAMPLE_SLICES)})
    return [(start, start + size) for start in starts]


def _gather(view: memoryview, ranges: list[tuple[int, int]]) -> Buffer:
    return view if ranges == [(0, len(view))] else b"".join(view[a:b] for a, b in ranges)


def _smallest(
    pool: Sequence[Codec], view: memoryview, base: memoryview | None, dtype: DType, ranges: list[tuple[int, int]]
) -> list[tuple[int, Codec, bytes]]:
    """(payload size, codec, payload) of each candidate on the joined ranges, in candidate order."""
    sample, base_sample = _gather(view, ranges), _gather(base, ranges) if base is not None else None
    results = []
    for codec in pool:
        payload = codec.encode(sample, dtype, base_sample if codec.needs_base else None)
        results.append((len(payload), codec, payload))
    return results


def choose_codec(
    raw: Buffer,
    dtype: DType,
    base: Buffer | None = None,
    candidates: Sequence[Codec] | None = None,
) -> tuple[Codec, bytes | None]:
    """The candidate whose trial payload is smallest (earlier candidates win ties), and, when the
    sample was the whole tensor, that winner's payload for it (so it need not be encoded again)."""
    view = memoryview(raw).cast("B")
    base_view = memoryview(base).cast("B") if base is not None else None
    pool = list(candidates) if candidates is not None else candidates_for(dtype, base is not None)
    pool = [codec for codec in pool if base_view is not None or not codec.needs_base]
    if not pool:
        raise ValueError("no candidate codec can encode without a base")
    ranges = sample_ranges(len(view), dtype.itemsize)
    whole = ranges == [(0, len(view))]
    if len(pool) > 2 and not whole:
        screen_budget = sum(b - a for a, b in ranges) // SCREEN_FRACTION
        screened = _smallest(pool, view, base_view, dtype, sample_ranges(len(view), dtype.itemsize, screen_budget))
        best_size = min(size for size, _, _ in screened)
        pool = [codec for size, codec, _ in screened if size <= SCREEN_MARGIN * best_size]
    results = _smallest(pool, view, base_view, dtype, ranges) if len(pool) > 1 or whole else []
    if not results:
        return pool[0], None
    _, codec, payload = min(results, key=lambda result: result[0])  # min keeps the first of equals
    return codec, payload if whole else None
