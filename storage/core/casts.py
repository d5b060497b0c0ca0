"""Cast prediction: a lower-precision tensor predicted from its higher-precision twin.

Hubs often hold one model in several precisions (an F32 checkpoint and its BF16 or F16 release). The
BF16 bytes are, almost everywhere, exactly the F32 bytes rounded; predicting them by that rounding and
coding only the difference makes the second precision nearly free. The prediction is a pure,
deterministic function of the base bytes, so decoding repeats it exactly; whatever it gets wrong
(other rounding modes, NaN payloads) is carried by the delta, so the result is lossless either way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from storage.core.dtypes import DType


def _f32_to_bf16(raw: bytes) -> bytes:
    u = np.frombuffer(raw, dtype="<u4").astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded.astype("<u2").tobytes()


def _f32_to_f16(raw: bytes) -> bytes:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.frombuffer(raw, dtype="<f4").astype("<f2").tobytes()


def _f64_to_f32(raw: bytes) -> bytes:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.frombuffer(raw, dtype="<f8").astype("<f4").tobytes()


_CASTS: dict[tuple[str, str], Callable[[bytes], bytes]] = {
    ("F32", "BF16"): _f32_to_bf16,
    ("F32", "F16"): _f32_to_f16,
    ("F64", "F32"): _f64_to_f32,
}


def can_predict(base: DType, target: DType) -> bool:
    return base.name == target.name or (base.name, target.name) in _CASTS


def ratio(base: DType, target: DType) -> int:
    """Base bytes per target byte: a target range [a, b) is predicted from base range [a·r, b·r)."""
    return base.bits // target.bits if base.name != target.name else 1


def predict(base_raw: bytes, base: DType, target: DType) -> bytes:
    """The target-dtype bytes the base bytes round to (the base bytes themselves for equal dtypes)."""
    if base.name == target.name:
        return base_raw
    cast = _CASTS.get((base.name, target.name))
    if cast is None:
        raise ValueError(f"no cast prediction from {base.name} to {target.name}")
    if len(base_raw) % (base.bits // 8):
        raise ValueError(f"{len(base_raw)} bytes are not whole {base.name} elements")
    return cast(base_raw)
