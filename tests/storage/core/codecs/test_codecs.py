"""Every codec round-trips every dtype and length, through the registry and its JSON config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.core.codecs import BadCodecConfig, CorruptFrame, UnknownCodec, entropy, get_codec, registered_codecs
from storage.core.codecs.planes import as_words
from storage.core.codecs.reference import (
    float_from_key,
    float_key,
    join_words,
    rotate_left,
    rotate_right,
    split_words,
    unzigzag,
    zigzag,
)
from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError, InternalError
from tests.storage.core.codecs.values import dtypes, tensor_bytes, tensor_pairs

# Every codec with the configs the chooser uses and a few more.
CONFIGS = [
    ("plain", {}),
    ("plain", {"skip": 0}),
    ("plain", {"skip": 3, "level": 3}),
    ("plain", {"skip": 9, "level": -1}),
    ("packed", {}),
    ("packed", {"skip": 1, "level": 3}),
    ("packed", {"skip": 17}),
    ("bitx", {}),
    ("bitx", {"skip": 3}),
    ("diff", {}),
    ("diff", {"group": True}),
    ("diff", {"group": True, "level": 1}),
]
configs = st.sampled_from(CONFIGS)


def test_every_registered_codec_is_exercised() -> None:
    assert {codec_id for codec_id, _ in CONFIGS} == set(registered_codecs())


@given(dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_pairs(d))), configs)
def test_round_trip(case, codec_config) -> None:
    dtype, (raw, base) = case
    codec_id, config = codec_config
    codec = get_codec(codec_id, json.loads(json.dumps(config)))
    base_or_none = base if codec.needs_base else None
    payload = codec.encode(raw, dtype, base_or_none)
    assert codec.decode(payload, dtype, len(raw), base_or_none) == raw
    # A memoryview in, as the frame layer passes slices of a larger buffer.
    assert codec.encode(memoryview(raw), dtype, base_or_none) == payload


@pytest.mark.parametrize(("codec_id", "config"), CONFIGS)
def test_config_round_trips_through_json(codec_id: str, config: dict) -> None:
    codec = get_codec(codec_id, config)
    again = get_codec(codec_id, json.loads(json.dumps(codec.get_config())))
    assert again == codec
    assert hash(again) == hash(codec)
    assert type(codec).from_config(codec.get_config()) == codec


def test_unknown_codec_is_an_integrity_error() -> None:
    with pytest.raises(UnknownCodec) as caught:
        get_codec("lzma-from-the-future")
    assert isinstance(caught.value, IntegrityError)
    assert "lzma-from-the-future" in caught.value.message


@pytest.mark.parametrize(
    ("codec_id", "config"),
    [
        ("plain", {"skip": -1}),
        ("plain", {"skip": "1"}),
        ("plain", {"level": 99}),
        ("plain", {"shuffle": True}),
        ("packed", {"skip": 57}),
        ("packed", {"group": True}),
        ("bitx", {"level": 1.5}),
        ("diff", {"group": 1}),
    ],
)
def test_bad_configs_are_refused(codec_id: str, config: dict) -> None:
    with pytest.raises(BadCodecConfig):
        get_codec(codec_id, config)


def test_base_is_required_exactly_when_needed() -> None:
    dtype = DTYPES["BF16"]
    with pytest.raises(InternalError):
        get_codec("plain").encode(b"\0\0", dtype, b"\0\0")
    with pytest.raises(InternalError):
        get_codec("bitx").encode(b"\0\0", dtype)
    with pytest.raises(InternalError):
        get_codec("diff").encode(b"\0\0", dtype, b"\0")


@given(dtypes.flatmap(lambda d: st.tuples(st.just(d), tensor_bytes(d))), st.integers(0, 70))
def test_planes_are_a_bijection(case, skip: int) -> None:
    dtype, raw = case
    words, _ = as_words(raw, dtype)
    planes = split_words(rotate_left(words, skip))
    assert all(p.dtype == np.uint8 and len(p) == len(words) for p in planes)
    assert rotate_right(join_words(planes, words.dtype), skip).tobytes() == words.tobytes()


@pytest.mark.parametrize("word", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_float_key_sorts_like_floats_and_zigzag_inverts(word) -> None:
    bits = np.dtype(word).itemsize * 8
    if bits == 8:
        words = np.arange(256, dtype=word)
    else:
        words = np.random.default_rng(0).integers(0, 1 << min(bits, 63), 5000, dtype=np.uint64).astype(word)
    keys = float_key(words)
    assert np.array_equal(float_from_key(keys.copy()), words)
    assert np.array_equal(unzigzag(zigzag(keys.copy())), keys)
    if bits in (32, 64):
        floats = words.view(np.float32 if bits == 32 else np.float64)
        finite = ~np.isnan(floats)
        order = np.argsort(keys[finite], kind="stable")
        assert np.all(np.diff(floats[finite][order]) >= 0)


def test_small_float_changes_are_small_diffs() -> None:
    # ±0 are neighbours and a one-ulp change is a zigzag value of at most 2.
    words = np.array([0x0000, 0x8000, 0x3F80, 0xBF80], dtype=np.uint16)
    moved = np.array([0x8000, 0x0000, 0x3F81, 0xBF81], dtype=np.uint16)
    delta = float_key(moved) - float_key(words)
    assert zigzag(delta).max() <= 2


@pytest.mark.parametrize(("codec_id", "config"), CONFIGS)
def test_truncated_or_padded_payload_is_corrupt(codec_id: str, config: dict) -> None:
    dtype = DTYPES["BF16"]
    raw = np.random.default_rng(3).integers(0, 4, 4000, dtype=np.uint16).tobytes()
    codec = get_codec(codec_id, config)
    base = bytes(len(raw)) if codec.needs_base else None
    payload = codec.encode(raw, dtype, base)
    for broken in (payload[:-1], payload + b"\0", payload[:3], b""):
        with pytest.raises(CorruptFrame):
            codec.decode(broken, dtype, len(raw), base)
    with pytest.raises(CorruptFrame):
        codec.decode(payload, dtype, len(raw) + 2, base.ljust(len(raw) + 2, b"\0") if base else None)


@pytest.mark.parametrize("level", [None, 3, -1])
def test_a_reused_zstd_context_writes_what_a_fresh_one_writes(level: int | None) -> None:
    rng = np.random.default_rng(4)
    planes = [rng.integers(0, 8, 200_000, dtype=np.uint8).tobytes(), rng.bytes(70_000), bytes(5000)]
    reused = entropy.compressor(level)
    for plane in planes:  # leave state behind from other, differently sized inputs
        reused.compress(plane)
    for plane in planes:
        assert reused.compress(plane) == entropy._new_compressor(level).compress(plane)
    assert entropy.compressor(level) is reused
