"""Types of the compiled kernels in _kernels.c (plane buffers: see storage/codecs/planes.py)."""

from collections.abc import Sequence

from storage.codecs.base import Buffer

def split(raw: Buffer, word_size: int, skip: int, base: Buffer | None) -> bytearray: ...
def merge(
    planes: Sequence[Buffer], raw_size: int, word_size: int, skip: int, base: Buffer | None, out: Buffer | None
) -> Buffer: ...
def split_diff(raw: Buffer, base: Buffer, word_size: int, float_key: bool, group: bool) -> bytearray: ...
def merge_diff(
    planes: Sequence[Buffer],
    raw_size: int,
    base: Buffer,
    word_size: int,
    float_key: bool,
    group: bool,
    out: Buffer | None,
) -> Buffer: ...
def empty(size: int) -> bytearray: ...
