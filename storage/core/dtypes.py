"""The element types a safetensors file may declare, with what the codecs need to know of each.

The list is the format's own (safetensors 0.8): every name it accepts is here, so a real file never fails
for a dtype we forgot, and a name not here is rejected as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["bool", "uint", "int", "float", "complex"]


@dataclass(frozen=True, slots=True)
class DType:
    name: str
    bits: int
    kind: Kind
    # Exponent width for floating types (for complex: of each component); 0 for the rest.
    exponent_bits: int = 0

    @property
    def itemsize(self) -> int:
        """Bytes per element for byte-aligned types; 1 for the sub-byte packed types (F4, F6)."""
        return max(1, self.bits // 8)

    @property
    def byte_aligned(self) -> bool:
        return self.bits % 8 == 0

    def nbytes(self, nelements: int) -> int | None:
        """Bytes that `nelements` elements occupy, or None when they do not end on a byte boundary."""
        total_bits = nelements * self.bits
        if total_bits % 8:
            return None
        return total_bits // 8


_ALL = (
    DType("BOOL", 8, "bool"),
    DType("F4", 4, "float", 2),
    DType("F6_E2M3", 6, "float", 2),
    DType("F6_E3M2", 6, "float", 3),
    DType("U8", 8, "uint"),
    DType("I8", 8, "int"),
    DType("F8_E5M2", 8, "float", 5),
    DType("F8_E4M3", 8, "float", 4),
    DType("F8_E8M0", 8, "float", 8),
    DType("F8_E4M3FNUZ", 8, "float", 4),
    DType("F8_E5M2FNUZ", 8, "float", 5),
    DType("I16", 16, "int"),
    DType("U16", 16, "uint"),
    DType("F16", 16, "float", 5),
    DType("BF16", 16, "float", 8),
    DType("I32", 32, "int"),
    DType("U32", 32, "uint"),
    DType("F32", 32, "float", 8),
    DType("C64", 64, "complex", 8),
    DType("F64", 64, "float", 11),
    DType("I64", 64, "int"),
    DType("U64", 64, "uint"),
)

DTYPES: dict[str, DType] = {d.name: d for d in _ALL}


def dtype(name: str) -> DType:
    """The DType called `name`; KeyError when the format has no such type."""
    return DTYPES[name]
