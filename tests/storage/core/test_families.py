"""Families: the architecture fingerprint, the sampled slices, and the base score, as pure functions."""

from __future__ import annotations

import numpy as np

from storage.core import casts
from storage.core.dtypes import DTYPES, DType
from storage.core.families import (
    MAX_BASE_SCORE,
    RANK_ELEMENTS,
    SAMPLE_BYTES,
    TensorShape,
    base_score,
    fingerprint,
    match_tensors,
    rank_span,
    sample_spans,
    shared_bytes,
)
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


def shape(name: str, dims: tuple[int, ...], dtype: DType = F32) -> TensorShape:
    return TensorShape(name, dtype, dims)


BASE = [shape("embeddings.word.weight", (100, 8)), shape("encoder.layer.0.q.weight", (8, 8)),
        shape("encoder.layer.0.k.weight", (8, 8)), shape("pooler.dense.weight", (8, 8))]


def test_prefixed_names_with_a_head_pair_by_a_derived_rule_and_the_head_is_left_to_measure() -> None:
    tuned = [shape("bert.embeddings.word.weight", (100, 8)), shape("bert.encoder.layer.0.q.weight", (8, 8)),
             shape("bert.encoder.layer.0.k.weight", (8, 8)), shape("classifier.weight", (3, 8))]
    matches, candidates = match_tensors(tuned, BASE)
    assert {(m.target, m.base, m.how) for m in matches} == {
        ("bert.embeddings.word.weight", "embeddings.word.weight", "renamed"),
        ("bert.encoder.layer.0.q.weight", "encoder.layer.0.q.weight", "renamed"),
        ("bert.encoder.layer.0.k.weight", "encoder.layer.0.k.weight", "renamed"),
    }
    assert candidates == {}  # no base tensor of the head's shape: coded alone
    # The other way round (base prefixed, tuned bare) and two levels deep derive alike.
    deep = [shape(f"base_model.model.{b.name}", b.shape) for b in BASE]
    assert {m.base for m in match_tensors(BASE, deep)[0]} == {b.name for b in deep}


def test_grown_rows_share_the_base_rows_and_other_shapes_do_not_pair() -> None:
    tuned = [shape("embeddings.word.weight", (110, 8)), shape("encoder.layer.0.q.weight", (8, 9))]
    matches, candidates = match_tensors(tuned, BASE)
    assert [(m.target, m.how, m.shared_bytes) for m in matches] == [("embeddings.word.weight", "grown", 100 * 8 * 4)]
    assert candidates == {}
    assert shared_bytes(shape("a", (4,), BF16), shape("a", (4,), F32)) == 8  # a cast base covers all
    assert shared_bytes(shape("a", (4,), F32), shape("a", (4,), BF16)) == 0  # a narrower one cannot


def test_unpaired_tensors_get_same_shape_candidates_to_measure() -> None:
    tuned = [shape("renamed.x", (8, 8)), shape("other.y", (100, 8))]
    _, candidates = match_tensors(tuned, BASE)
    assert candidates["renamed.x"] == sorted(b.name for b in BASE if b.shape == (8, 8))
    assert candidates["other.y"] == ["embeddings.word.weight"]


def test_rank_span_takes_the_middle_elements() -> None:
    assert rank_span(TensorShape("w", DTYPES["F16"], (64, 64))) == ((4096 - RANK_ELEMENTS) // 2 * 2,
                                                                   (4096 + RANK_ELEMENTS) // 2 * 2)
    assert rank_span(TensorShape("b", DTYPES["F32"], (10,))) == (0, 40)
