"""A tensor encoded window by window against a base that may cover only a prefix of it.

A tensor that grew (tokens added: `resize_token_embeddings` appends embedding rows) shares its leading
rows with its base, element for element, and its new rows have no counterpart. The windows are cut at
that boundary: the shared ones are coded against the base's bytes for the same elements (each window
still picks plain where that is smaller), the new ones alone. No new frame layout is needed: a delta
frame for raw range [a, b) decodes with the base's bytes [a·r, b·r) (docs/format.md), which lie inside
the base because the frame lies inside the shared prefix; frames past it take no base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from storage.core.dtypes import DType
from storage.core.errors import InternalError
from storage.core.frames import DEFAULT_FRAME_BYTES, EncodedTensor, encode_tensor
from storage.core.layouts import Transposed

ReadRange = Callable[[int, int], bytes]


def window_ranges(nbytes: int, window: int, shared: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `window` bytes covering [0, nbytes), none straddling `shared`
    (the end of the prefix the base covers). An empty tensor has no window (and so no frame)."""
    if window <= 0 or not 0 <= shared <= nbytes:
        raise InternalError(detail=f"bad windows: window {window}, shared {shared} of {nbytes}")
    out: list[tuple[int, int]] = []
    for lo, hi in ((0, shared), (shared, nbytes)):
        out.extend((a, min(a + window, hi)) for a in range(lo, hi, window))
    return out


def encode_against_prefix(
    read_raw: ReadRange,
    nbytes: int,
    dtype: DType,
    *,
    read_base: ReadRange | None,
    base_dtype: DType | None,
    shared: int,
    window: int,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    verify: bool = True,
    layout: Transposed | None = None,
) -> Iterator[tuple[int, EncodedTensor]]:
    """(window start, its encoding) for each window; `read_base(a, b)` gives the base's own bytes for
    target bytes [a, b) (asked only inside [0, shared)), gathered through `layout` when there is one
    (the delta frames then record it). `shared` must be a whole number of elements."""
    if shared % dtype.itemsize:
        raise InternalError(detail=f"shared prefix of {shared} bytes is not whole {dtype.name} elements")
    for start, end in window_ranges(nbytes, window, shared if read_base is not None else 0):
        raw = read_raw(start, end)
        base = read_base(start, end) if (read_base is not None and end <= shared) else None
        yield start, encode_tensor(
            raw, dtype, base, base_dtype=base_dtype if base is not None else None, frame_bytes=frame_bytes,
            verify=verify, layout=layout if base is not None else None,
        )
