"""Families: the architecture fingerprint, the sampled slices, and the base score, as pure functions."""

from __future__ import annotations

import numpy as np

from storage.core import casts
from storage.core.dtypes import DTYPES, DType
from storage.core.families import MAX_BASE_SCORE, SAMPLE_BYTES, base_score, fingerprint, sample_spans
from storage.core.formats.base import TensorEntry

F32, BF16, I64 = DTYPES["F32"], DTYPES["BF16"], DTYPES["I64"]


def entry(name: str, shape: tuple[int, ...], dtype: DType = F32) -> TensorEntry:
    return TensorEntry(name, dtype, shape, 0, int(np.prod(shape)) * dtype.itemsize)


def test_fingerprint_ignores_dtype_order_and_integer_buffers() -> None:
    model = [entry("a", (4, 4)), entry("b", (8,))]
    assert fingerprint(model) == fingerprint([entry("b", (8,), BF16), entry("a", (4, 4), BF16)])
    assert fingerprint(model) == fingerprint([*model, entry("position_ids", (1, 512), I64)])
    assert fingerprint(model) != fingerprint([entry("a", (4, 4)), entry("b", (9,))])
    assert fingerprint(model) != fingerprint([entry("a", (4, 4)), entry("c", (8,))])


def test_sample_spans_take_the_middle_of_the_largest_tensors() -> None:
    tensors = [entry("big", (1 << 20,)), entry("small", (10,)), entry("empty", (0,)), entry("f4", (3,), DTYPES["F4"])]
    spans = {s.name: s for s in sample_spans(tensors)}
    assert set(spans) == {"big", "small"}  # empty and sub-byte tensors are never sampled
    big = spans["big"]
    assert big.end - big.start == SAMPLE_BYTES and big.start == (4 << 20) // 2
    assert (spans["small"].start, spans["small"].end) == (0, 40)
    assert sample_spans(tensors) == sample_spans(list(reversed(tensors)))


def test_base_score_is_low_for_a_relative_and_one_for_strangers() -> None:
    rng = np.random.default_rng(0)
    base = (rng.standard_normal(20000) * 0.05).astype(np.float32)
    tuned = (base * (1 + 1e-3 * rng.standard_normal(base.shape))).astype(np.float32)
    stranger = (rng.standard_normal(20000) * 0.05).astype(np.float32)
    assert base_score([(tuned.tobytes(), base.tobytes(), F32, F32)]) < MAX_BASE_SCORE
    assert base_score([(stranger.tobytes(), base.tobytes(), F32, F32)]) >= MAX_BASE_SCORE
    assert base_score([]) == 1.0


def test_a_bf16_release_scores_close_to_its_f32_twin() -> None:
    base = (np.random.default_rng(1).standard_normal(20000) * 0.05).astype(np.float32).tobytes()
    release = casts.predict(base, F32, BF16)
    assert base_score([(release, base, BF16, F32)]) < 0.05
