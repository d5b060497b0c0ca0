"""The compiled kernels produce exactly what the numpy reference specifies, for every dtype and length."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.codecs import _kernels, kernels, reference
from storage.core.codecs.planes import has_sign_bit, packed_plane_sizes, plane_views, word_bytes
from storage.core.dtypes import DTYPES
from tests.storage.core.codecs.values import dtypes, tensor_bytes, tensor_pairs

cases = dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_pairs(d)))


def test_production_path_is_the_compiled_extension() -> None:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert _kernels.__file__ is not None and _kernels.__file__.endswith(suffixes)
    assert kernels.split is _kernels.split and kernels.merge_diff is _kernels.merge_diff


def test_missing_extension_is_a_loud_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "storage.core.codecs._kernels", None)  # as if never built
    monkeypatch.delitem(sys.modules, "storage.core.codecs.kernels")
    with pytest.raises(ImportError, match=r"pip install -e \."):
        importlib.import_module("storage.core.codecs.kernels")


def _merge_both_ways(merge, planes: bytes, raw: bytes, **kwargs) -> None:
    """The kernel's inverse gives `raw` both as new bytes and written into a caller's buffer."""
    views = plane_views(planes, kwargs.pop("word"))
    fresh = merge(views, len(raw), out=None, **kwargs)
    assert type(fresh) is bytes and fresh == raw
    out = bytearray(b"\xa5" * len(raw))
    assert merge(views, len(raw), out=out, **kwargs) is out
    assert out == raw


@given(cases, st.integers(0, 70), st.booleans())
def test_split_and_merge_match_the_reference(case, skip: int, with_base: bool) -> None:
    dtype, (raw, base) = case
    word, base_or_none = word_bytes(dtype), base if with_base else None
    planes = kernels.split(raw, word, skip, base_or_none)
    assert bytes(planes) == reference.split(raw, dtype, skip, base_or_none)
    assert reference.merge(planes, dtype, skip, base_or_none) == raw

    def merge(views, raw_size, out, **kw):
        return kernels.merge(views, raw_size, word, skip, base_or_none, out)

    _merge_both_ways(merge, bytes(planes), raw, word=word)


@given(cases, st.booleans())
def test_diff_split_and_merge_match_the_reference(case, group: bool) -> None:
    dtype, (raw, base) = case
    word, float_key = word_bytes(dtype), has_sign_bit(dtype)
    planes = kernels.split_diff(raw, base, word, float_key, group)
    assert bytes(planes) == reference.split_diff(raw, base, dtype, group)
    assert reference.merge_diff(planes, base, dtype, group) == raw

    def merge(views, raw_size, out, **kw):
        return kernels.merge_diff(views, raw_size, base, word, float_key, group, out)

    _merge_both_ways(merge, bytes(planes), raw, word=word)


@given(dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_bytes(d))), st.integers(0, 70))
def test_packed_split_and_merge_match_the_reference(case, skip: int) -> None:
    dtype, raw = case
    word = word_bytes(dtype)
    planes = kernels.split_packed(raw, word, skip)
    assert bytes(planes) == reference.split_packed(raw, dtype, skip)
    assert reference.merge_packed(planes, dtype, len(raw), skip) == raw
    views = plane_views(planes, 1, packed_plane_sizes(word, len(raw)))
    fresh = kernels.merge_packed(views, len(raw), word, skip, None)
    assert type(fresh) is bytes and fresh == raw
    out = bytearray(b"\xa5" * len(raw))
    assert kernels.merge_packed(views, len(raw), word, skip, out) is out
    assert out == raw


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 11, 12, 13, 4097])
@pytest.mark.parametrize("name", ["U8", "BF16", "F32", "F64"])
def test_packed_every_column_count_and_partial_last_quarter(name: str, count: int) -> None:
    # The kernels' two loops (whole columns, then the last ones with a missing element) meet at
    # count - 3 * ceil(count / 4): every residue mod 4, and counts too small to fill three quarters.
    dtype = DTYPES[name]
    raw = np.random.default_rng(count).bytes(count * word_bytes(dtype))
    planes = kernels.split_packed(raw, word_bytes(dtype), 3)
    assert bytes(planes) == reference.split_packed(raw, dtype, 3)
    views = plane_views(planes, 1, packed_plane_sizes(word_bytes(dtype), len(raw)))
    assert kernels.merge_packed(views, len(raw), word_bytes(dtype), 3, None) == raw


@pytest.mark.parametrize("name", ["U8", "F8_E4M3", "BF16", "I16", "F32", "C64", "F64", "U64"])
def test_grouping_across_blocks_and_every_context(name: str) -> None:
    # More elements than one kernel block (2048), all 256 contexts, and a length that is not a multiple
    # of four (the histogram's unrolled step) nor of the word.
    dtype = DTYPES[name]
    rng = np.random.default_rng(11)
    raw, base = rng.bytes(5003 * word_bytes(dtype) + 1), rng.bytes(5003 * word_bytes(dtype) + 1)
    planes = kernels.split_diff(raw, base, word_bytes(dtype), has_sign_bit(dtype), True)
    assert bytes(planes) == reference.split_diff(raw, base, dtype, True)
    views = plane_views(planes, word_bytes(dtype))
    assert kernels.merge_diff(views, len(raw), base, word_bytes(dtype), has_sign_bit(dtype), True, None) == raw


def test_kernels_refuse_inconsistent_buffers() -> None:
    raw = bytes(range(10))
    planes = plane_views(kernels.split(raw, 2, 1, None), 2)
    with pytest.raises(ValueError, match="planes given"):
        kernels.merge(planes[:1], 10, 2, 1, None, None)
    with pytest.raises(ValueError, match="plane 0 has"):
        kernels.merge([planes[0][:4], planes[1]], 10, 2, 1, None, None)
    with pytest.raises(ValueError, match="output has"):
        kernels.merge(planes, 10, 2, 1, None, bytearray(9))
    with pytest.raises(BufferError):
        kernels.merge(planes, 10, 2, 1, None, b"\0" * 10)  # read-only output
    with pytest.raises(ValueError, match="base has"):
        kernels.split(raw, 2, 1, bytes(9))
    with pytest.raises(ValueError, match="needs the base"):
        kernels.split_diff(raw, None, 2, True, False)
    with pytest.raises(ValueError, match="word size"):
        kernels.split(raw, 3, 0, None)
    with pytest.raises(ValueError, match="negative"):
        kernels.empty(-1)
    packed = plane_views(kernels.split_packed(raw, 2, 3), 1, packed_plane_sizes(2, 10))
    with pytest.raises(ValueError, match="planes given"):
        kernels.merge_packed(packed[:2], 10, 2, 3, None)
    with pytest.raises(ValueError, match="plane 1 has"):
        kernels.merge_packed([packed[0], packed[1][:-1], packed[2]], 10, 2, 3, None)
    with pytest.raises(ValueError, match="output has"):
        kernels.merge_packed(packed, 10, 2, 3, bytearray(11))
    with pytest.raises(ValueError, match="negative skip"):
        kernels.split_packed(raw, 2, -1)
    with pytest.raises(ValueError, match="word size"):
        kernels.split_packed(raw, 3, 0)


def _reflected_residue(exponent: int) -> int:
    """x^exponent mod zlib's CRC polynomial, bit-reflected over 33 bits."""
    residue = 1
    for _ in range(exponent):
        residue <<= 1
        if residue >> 32 & 1:
            residue ^= 0x104C11DB7
    return int(f"{residue:033b}"[::-1], 2)


def test_crc_fold_constants_follow_from_the_polynomial() -> None:
    constants = _kernels.fold_constants()
    if constants is None:
        pytest.skip("no carry-less multiply path on this machine")
    assert constants == tuple(_reflected_residue(d + s) for d in (512, 128) for s in (32, -32))


@given(st.binary(max_size=600), st.integers(0, 15), st.integers(0, 2**32 - 1))
def test_crc32_is_zlibs(data: bytes, offset: int, value: int) -> None:
    view = memoryview(data)[min(offset, len(data)) :]  # unaligned starts
    assert kernels.crc32(view, value) == zlib.crc32(view, value)
    assert _kernels.crc32_portable(view, value) == zlib.crc32(view, value)
    assert kernels.crc32(view) == zlib.crc32(view)


def test_crc32_of_a_large_buffer_is_zlibs() -> None:
    data = np.random.default_rng(5).bytes((4 << 20) + 13)
    assert kernels.crc32(data) == zlib.crc32(data)
