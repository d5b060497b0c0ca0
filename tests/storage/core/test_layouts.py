"""Transposed bases: the layout stage, and frames (version 3) that record it, round-trip every bit."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.core import casts, layouts
from storage.core.codecs import CorruptFrame, get_codec
from storage.core.codecs.planes import word_dtype
from storage.core.dtypes import DTYPES, DType
from storage.core.errors import IntegrityError, InternalError
from storage.core.frames import (
    FRAME_MAGIC,
    LAYOUT_FRAME_VERSION,
    decode_frame,
    decode_frames,
    decode_tensor,
    decode_tensor_range,
    encode_frame,
    encode_tensor,
    read_frame_header,
)
from storage.core.layouts import Transposed, transposed_of
from tests.storage.core.codecs.values import special_words

FLOATS = sorted((d for d in DTYPES.values() if d.kind == "float" and d.byte_aligned), key=lambda d: d.name)
# (base dtype, target dtype): in place and every cast a frame can record.
CASTS = (("F32", "BF16"), ("F32", "F16"), ("F64", "F32"))
PAIRS = [(d, d) for d in FLOATS] + [(DTYPES[a], DTYPES[b]) for a, b in CASTS]


def matrix_words(rng: np.random.Generator, dtype: DType, count: int, kind: str) -> bytes:
    """`count` elements of `dtype`: weight-like values, specials (NaN payloads, ±0, denormals, ±inf), or bits."""
    word = word_dtype(dtype)
    bits = word.itemsize * 8
    if kind == "special":
        return rng.choice(np.array(special_words(dtype), dtype=word), count).astype(word).tobytes()
    if kind == "bits":
        return rng.bytes(count * word.itemsize)
    top = rng.integers(0, 1 << min(bits, 8), count, dtype=np.uint64) & np.uint64(0x8F)
    low = rng.integers(0, 1 << (bits - 8), count, dtype=np.uint64) if bits > 8 else np.uint64(0)
    words = ((top | np.uint64(0x30)) << np.uint64(bits - 8) | low).astype(word)
    specials = np.array(special_words(dtype), dtype=word)
    if count:
        words[rng.integers(0, count, max(1, count // 8))] = rng.choice(specials)
    return words.tobytes()


def reference_transpose(base: bytes, dtype: DType, rows: int, cols: int) -> bytes:
    word = word_dtype(dtype)
    return np.frombuffer(base, dtype=word).reshape(rows, cols).T.copy().tobytes()


@st.composite
def transposed_cases(draw: st.DrawFn) -> tuple[DType, DType, int, int, bytes, bytes]:
    """(base dtype, dtype, rows, cols, base, target): the target is the base transposed (cast-predicted
    when the dtypes differ), then kept, nudged by a few ulps, bit-flipped, or replaced by unrelated bits."""
    source, dtype = draw(st.sampled_from(PAIRS))
    rows = draw(st.sampled_from([0, 1, 2, 3, 7, 16, 33]))
    cols = draw(st.sampled_from([0, 1, 2, 5, 8, 31]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = matrix_words(rng, source, rows * cols, draw(st.sampled_from(["weights", "special", "bits"])))
    target = reference_transpose(base, source, rows, cols)
    if source.name != dtype.name:
        target = casts.predict(target, source, dtype)
    word = word_dtype(dtype)
    words = np.frombuffer(target, dtype=word).copy()
    relation = draw(st.sampled_from(["identical", "ulps", "bits", "unrelated"]))
    if relation == "unrelated":
        words = np.frombuffer(rng.bytes(len(target)), dtype=word).copy()
    elif relation != "identical" and len(words):
        picked = rng.integers(0, len(words), max(1, len(words) // 4))
        if relation == "ulps":
            words[picked] += rng.integers(-3, 4, len(picked)).astype(word)
        else:
            words[picked] ^= word.type(1) << rng.integers(0, word.itemsize * 8, len(picked)).astype(word)
    return source, dtype, rows, cols, base, words.tobytes()


@given(transposed_cases(), st.data())
@settings(max_examples=300, deadline=None)
def test_gather_takes_the_transposes_elements_bit_for_bit(case, data: st.DataObject) -> None:
    source, _, rows, cols, base, _ = case
    layout = Transposed(rows, cols)
    whole = reference_transpose(base, source, rows, cols)
    assert layouts.transpose(base, layout, source.itemsize) == whole
    first = data.draw(st.integers(0, rows * cols))
    last = data.draw(st.integers(first, rows * cols))
    size = source.itemsize
    assert layouts.gather(base, layout, size, first, last) == whole[first * size : last * size]


@given(transposed_cases(), st.integers(1, 300), st.data())
@settings(max_examples=300, deadline=None)
def test_a_tensor_coded_against_a_transposed_base_decodes_exactly(case, frame_bytes: int, data: st.DataObject) -> None:
    source, dtype, rows, cols, base, raw = case
    layout = Transposed(rows, cols)
    ordered = layouts.transpose(base, layout, source.itemsize)
    encoded = encode_tensor(raw, dtype, ordered, base_dtype=source, frame_bytes=frame_bytes, layout=layout)
    # The reader hands every frame the whole base in its own layout; the frames gather their elements.
    assert decode_tensor(encoded, base) == raw
    assert b"".join(decode_frames(encoded.frames, encoded.spans, base, base_dtype=source.name)) == raw
    start = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(start, len(raw)))
    ranged = decode_tensor_range(encoded.frames, encoded.spans, start, end, base, base_dtype=source.name)
    assert ranged == raw[start:end]
    for blob in encoded.frames:
        header = read_frame_header(blob)
        delta = get_codec(header.codec_id, header.config).needs_base
        assert (header.version, header.layout) == ((3, layout) if delta else (2, None))


def test_identical_after_transpose_codes_to_nearly_nothing() -> None:
    rng = np.random.default_rng(0)
    rows, cols = 384, 1536
    base = rng.standard_normal(rows * cols).astype("<f4").tobytes()
    layout = Transposed(rows, cols)
    raw = reference_transpose(base, DTYPES["F32"], rows, cols)
    encoded = encode_tensor(raw, DTYPES["F32"], layouts.transpose(base, layout, 4), layout=layout)
    assert encoded.encoded_size < 0.001 * len(raw)
    assert decode_tensor(encoded, base) == raw
    # The same base read in place does not help: a transposed twin is not a same-layout relative.
    in_place = encode_tensor(raw, DTYPES["F32"], base)
    assert in_place.encoded_size > 0.5 * len(raw)


def test_transposed_of_pairs_reversed_2d_shapes_only() -> None:
    assert transposed_of((384, 1536), (1536, 384)) == Transposed(1536, 384)
    assert transposed_of((8, 8), (8, 8)) == Transposed(8, 8)
    assert transposed_of((1, 5), (5, 1)) == Transposed(5, 1)
    for target, base in (((2, 3), (2, 3)), ((6,), (6,)), ((2, 3, 4), (4, 3, 2)), ((2, 3), (3, 2, 1))):
        assert transposed_of(target, base) is None


def test_a_v3_frame_decodes_only_with_the_whole_base_of_its_shape() -> None:
    rows, cols = 6, 4
    base = np.arange(rows * cols, dtype="<u2").tobytes()
    layout = Transposed(rows, cols)
    raw = reference_transpose(base, DTYPES["BF16"], rows, cols)
    encoded = encode_tensor(raw, DTYPES["BF16"], layouts.transpose(base, layout, 2), layout=layout)
    assert encoded.layout == layout and read_frame_header(encoded.frames[0]).version == LAYOUT_FRAME_VERSION
    with pytest.raises(IntegrityError, match=r"\[6, 4\] base"):
        decode_tensor(encoded, base[:-2] + b"")
    with pytest.raises(CorruptFrame):
        decode_frame(encoded.frames[0], base)  # handed in place, the base is not what the frame was coded with


def _craft_v3(kind: int, params: bytes, *, codec: bytes = b"bitx", base_dtype: bytes = b"BF16",
              raw_size: int = 0) -> bytes:  # fmt: skip
    config = b'{"level":null,"skip":1}'
    fixed = struct.pack("<4sBBBBHBBIII", FRAME_MAGIC, 3, 0, len(codec), 4, len(config), len(base_dtype), kind,
                        raw_size, 0, 0)  # fmt: skip
    variable = codec + b"BF16" + config + base_dtype + params
    return fixed + zlib.crc32(variable, zlib.crc32(fixed)).to_bytes(4, "little") + variable


def test_v3_layout_fields_are_checked() -> None:
    good = struct.pack("<QQ", 3, 2)
    assert read_frame_header(_craft_v3(1, good)).layout == Transposed(3, 2)
    with pytest.raises(CorruptFrame, match="base layout 0"):
        read_frame_header(_craft_v3(0, good))
    with pytest.raises(CorruptFrame, match="base layout 7"):
        read_frame_header(_craft_v3(7, good))
    with pytest.raises(CorruptFrame, match="names no base dtype"):
        read_frame_header(_craft_v3(1, good, base_dtype=b""))
    with pytest.raises(CorruptFrame, match="cannot lie"):
        read_frame_header(_craft_v3(1, good, raw_size=14))  # 7 BF16 elements in a 6-element matrix
    with pytest.raises(CorruptFrame, match="truncated"):
        read_frame_header(_craft_v3(1, good[:8]))
    with pytest.raises(CorruptFrame, match="takes no base"):
        decode_frame(_craft_v3(1, good, codec=b"plain"), b"")


def test_a_plain_frame_never_records_a_layout() -> None:
    raw = np.arange(12, dtype="<u2").tobytes()
    blob = encode_frame(get_codec("plain"), raw, DTYPES["BF16"], layout=Transposed(3, 4))
    assert read_frame_header(blob).version == 2 and decode_frame(blob) == raw
    with pytest.raises(InternalError):
        layouts.gather(raw, Transposed(5, 5), 2, 0, 1)
