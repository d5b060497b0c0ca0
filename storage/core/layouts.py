"""Base layouts: how a delta frame's base elements are taken from its base tensor.

The identity layout takes the base's elements in place: frame [a, b) of the target decodes with the
base's bytes [a·r, b·r) (frame versions 1 and 2). `Transposed(rows, cols)` takes them from the base read
as its transpose: the base is a row-major [rows, cols] matrix, the target a [cols, rows] one, and
target element k = i·rows + j is base element j·cols + i. ONNX exporters write Linear weights this way
(a MatMul initializer is the weight transposed), so the same values reach the hub in both layouts.

The stage runs in the base's own dtype, before any cast prediction (storage/core/casts.py): gathering
moves whole elements, so every bit (NaN payloads, -0.0, denormals) arrives as the base holds it.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.core.errors import InternalError

# Element widths a gather moves as one unsigned word (sub-byte dtypes are never paired this way).
_WORDS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8", 16: "V16"}


@dataclass(frozen=True, slots=True)
class Transposed:
    """The base is a row-major [rows, cols] matrix read as its [cols, rows] transpose."""

    rows: int
    cols: int

    @property
    def base_shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def target_shape(self) -> tuple[int, int]:
        return (self.cols, self.rows)

    @property
    def elements(self) -> int:
        return self.rows * self.cols


def transposed_of(target: tuple[int, ...], base: tuple[int, ...]) -> Transposed | None:
    """The layout under which a base of shape `base` holds a target of shape `target` transposed
    (both 2-D, [r, c] against [c, r]); None otherwise. Square matrices qualify too: whether the
    identity or the transpose is nearer is measured, never assumed."""
    if len(target) != 2 or len(base) != 2 or tuple(reversed(base)) != tuple(target):
        return None
    return Transposed(base[0], base[1])


def gather(base: bytes | bytearray | memoryview, layout: Transposed, itemsize: int, first: int, last: int) -> bytes:
    """Target elements [first, last) taken from the whole `base` (the base tensor's own bytes, elements
    of `itemsize` bytes) read through `layout`: what the codec sees as the base of those elements,
    before any cast. Costs O(rows × touched target rows) of reading and O(last - first) of output."""
    word = _WORDS.get(itemsize)
    view = memoryview(base).cast("B")
    if word is None or len(view) != layout.elements * itemsize:
        raise InternalError(
            detail=f"base of {len(view)} bytes is not a [{layout.rows}, {layout.cols}] matrix "
            f"of {itemsize}-byte elements"
        )
    if not 0 <= first <= last <= layout.elements:
        raise InternalError(detail=f"elements [{first}, {last}) are outside a {layout.elements}-element matrix")
    if first == last:
        return b""
    matrix = np.frombuffer(view, dtype=word).reshape(layout.rows, layout.cols)
    # Target rows first_row..last_row are base columns: take only those columns, then transpose them.
    first_row, last_row = first // layout.rows, (last - 1) // layout.rows
    strip = np.ascontiguousarray(matrix[:, first_row : last_row + 1].T).reshape(-1)
    offset = first - first_row * layout.rows
    return strip[offset : offset + (last - first)].tobytes()


def transpose(base: bytes | bytearray | memoryview, layout: Transposed, itemsize: int) -> bytes:
    """The whole base read through `layout` (the target-order bytes of every element)."""
    return gather(base, layout, itemsize, 0, layout.elements)
