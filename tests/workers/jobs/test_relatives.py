"""Candidate bases at scale: the root and the relatives nearest by sketch are measured, whatever the
family's size and the order its members arrived in, and a full chain does not take newcomers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from storage.app.hub import Hub
from storage.catalog import files, sketches
from storage.objectstore import ObjectStore
from tests.hubs import ingest_all, make_hub, push, read_all
from tests.models import finetune, make_weights, to_safetensors


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def base_of(hub: Hub, data: bytes) -> str | None:
    with hub.session() as s:
        return files.snapshot(s, sha(data)).base_sha256


def ingest(hub: Hub, repo: str, weights: dict[str, np.ndarray]) -> bytes:
    data = to_safetensors(weights)
    ingest_all(hub, push(hub, repo, {"model.safetensors": data}))
    assert read_all(hub, sha(data)) == data
    return data


@pytest.fixture
def hub(tmp_path: Path, local_store: ObjectStore) -> Hub:
    return make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=16 << 10)


def test_every_one_of_twenty_children_is_coded_against_the_root(hub: Hub) -> None:
    """The old rule measured the declared base and the 8 most recent members only: from child 9 on the
    root was out of sight and children were coded against siblings (twice the distance)."""
    root_w = make_weights(1)
    root = ingest(hub, "org/root", root_w)
    children = [ingest(hub, f"org/child-{k}", finetune(root_w, 100 + k)) for k in range(20)]
    assert [k for k, child in enumerate(children) if base_of(hub, child) != sha(root)] == []
    with hub.session() as s:
        assert sketches.file_sketch(s, sha(children[14])) is not None, "the sketch is recorded at ingest"


def test_a_grandchild_finds_its_parent_among_twenty_siblings(hub: Hub) -> None:
    root_w = make_weights(2)
    ingest(hub, "org/root", root_w)
    children_w = [finetune(root_w, 200 + k) for k in range(20)]
    children = [ingest(hub, f"org/child-{k}", w) for k, w in enumerate(children_w)]
    grandchild = ingest(hub, "org/grandchild", finetune(children_w[2], 300))
    assert base_of(hub, grandchild) == sha(children[2])


def test_a_full_chain_hands_newcomers_to_the_nearest_open_relative(tmp_path: Path, local_store: ObjectStore) -> None:
    hub = make_hub(tmp_path, f"sqlite:///{tmp_path / 'c.sqlite3'}", local_store, frame_bytes=16 << 10,
                   max_chain_depth=2)  # fmt: skip
    root_w = make_weights(3)
    root = ingest(hub, "org/root", root_w)
    child_w = finetune(root_w, 31)
    child = ingest(hub, "org/child", child_w)
    grandchild_w = finetune(child_w, 32)
    grandchild = ingest(hub, "org/grandchild", grandchild_w)
    assert (base_of(hub, child), base_of(hub, grandchild)) == (sha(root), sha(child))
    # The grandchild's chains are 2 deep: its own child would be handed over to the grandchild's base
    # tensor by tensor; it is measured against the open relatives instead (the child, or the root when
    # that codes within the shallower-base allowance), and recorded so.
    great = ingest(hub, "org/great-grandchild", finetune(grandchild_w, 33))
    assert base_of(hub, great) in (sha(child), sha(root))
    with hub.session() as s:
        assert sketches.chain_depths(s, [sha(great)])[sha(great)] <= 2


def moved(weights: dict[str, np.ndarray], seed: int, ulp: int = 1) -> dict[str, np.ndarray]:
    """A generation as bench/scale.py models one: 10% of the elements moved by 1-3 ulps (of BF16 with
    `ulp` 1 << 16)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, w in weights.items():
        bits = w.astype(np.float32).view(np.int32).copy().reshape(-1)
        pick = np.flatnonzero(rng.random(bits.size) < 0.1)
        bits[pick] += rng.choice([-3, -2, -1, 1, 2, 3], pick.size).astype(np.int32) * ulp
        out[name] = bits.view(np.float32).reshape(w.shape)
    return out


def test_a_parent_pushed_after_its_child_adopts_it(hub: Hub) -> None:
    root_w = make_weights(4)
    root = ingest(hub, "org/root", root_w)
    child_w = moved(root_w, 41)
    grandchild = ingest(hub, "org/grandchild", moved(child_w, 42))
    assert base_of(hub, grandchild) == sha(root), "its parent is not stored yet"
    child = ingest(hub, "org/child", child_w)
    assert base_of(hub, child) == sha(root)
    assert base_of(hub, grandchild) == sha(child), "re-encoded against its parent once that arrived"
    assert read_all(hub, sha(grandchild)) == grandchild


def test_a_sibling_is_not_adopted_and_a_late_root_adopts_the_children_coded_against_each_other(hub: Hub) -> None:
    root_w = make_weights(5)
    first = ingest(hub, "org/first", moved(root_w, 51))
    second = ingest(hub, "org/second", moved(root_w, 52))
    assert (base_of(hub, first), base_of(hub, second)) == (None, sha(first))
    third = ingest(hub, "org/third", moved(root_w, 53))  # a sibling is no nearer to them than they are
    assert (base_of(hub, first), base_of(hub, second)) == (None, sha(first))
    root = ingest(hub, "org/root", root_w)
    assert base_of(hub, second) == sha(root)
    assert base_of(hub, third) == sha(root)
    for data in (first, second, third, root):
        assert read_all(hub, sha(data)) == data


BF16_ULP = 1 << 16


def test_in_random_order_chains_run_towards_the_familys_centre(hub: Hub) -> None:
    """Children and grandchildren pushed before their root: each is coded against a sibling or a
    grandparent at first; the root, stored plain (only its descendants help), adopts what its budget
    allows, and the later pushes of the family repair the rest onto their true parents."""
    root_w = make_weights(6)
    children_w = [moved(root_w, 600 + k, BF16_ULP) for k in range(8)]
    grand_w = [moved(children_w[k], 700 + k, BF16_ULP) for k in range(8)]
    grand = [ingest(hub, f"org/grand-{k}", grand_w[k]) for k in range(4)]
    children = [ingest(hub, f"org/child-{k}", w) for k, w in enumerate(children_w)]
    root = ingest(hub, "org/root", root_w)
    assert base_of(hub, root) is None
    grand += [ingest(hub, f"org/grand-{k}", grand_w[k]) for k in range(4, 8)]
    assert [k for k, child in enumerate(children) if base_of(hub, child) != sha(root)] == []
    assert [k for k, g in enumerate(grand) if base_of(hub, g) != sha(children[k])] == []
    for data in [root, *children, *grand]:
        assert read_all(hub, sha(data)) == data
