"""Committed v3 golden frames (transposed bases) decode byte-exact from the whole base, re-encode to
exactly the committed bytes, and share packs with v1 and v2 frames (never regenerated here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from storage.core import layouts
from storage.core.codecs import CorruptFrame, get_codec
from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError
from storage.core.frames import base_window, decode_frame, encode_frame, read_frame_header
from storage.core.layouts import Transposed
from storage.core.packs import iter_pack
from tests.storage.core.golden.make_v3 import v3_recipe_bytes

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "v3" / "manifest.json").read_text())
V3: list[dict[str, Any]] = MANIFEST["frames"]


def inputs(entry: dict[str, Any]) -> tuple[bytes, bytes]:
    raw, base = v3_recipe_bytes(entry["input"]), v3_recipe_bytes(entry["base"])
    assert hashlib.sha256(raw).hexdigest() == entry["raw_sha256"], "the input generator changed"
    assert hashlib.sha256(base).hexdigest() == entry["base_sha256"], "the input generator changed"
    return raw, base


def test_the_v3_set_covers_both_delta_codecs_casts_and_thin_matrices() -> None:
    assert {e["codec"] for e in V3} == {"bitx", "diff"}
    assert {(e["base_dtype"], e["dtype"]) for e in V3 if e["base_dtype"] != e["dtype"]} == {
        ("F32", "BF16"), ("F32", "F16"), ("F64", "F32")}
    shapes = {tuple(e["layout"]["transpose"]) for e in V3}
    assert any(r == 1 for r, _ in shapes) and any(c == 1 for _, c in shapes) and any(r == c for r, c in shapes)
    assert any(e["elements"][0] > 0 for e in V3)
    assert sum((GOLDEN / "v3" / e["file"]).stat().st_size for e in V3) < 50_000


@pytest.mark.parametrize("entry", V3, ids=[e["file"] for e in V3])
def test_v3_frame_decodes_from_the_whole_base(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / "v3" / entry["file"]).read_bytes()
    header = read_frame_header(blob)
    rows, cols = entry["layout"]["transpose"]
    assert (header.version, header.codec_id, header.dtype, header.base_dtype, header.layout) == (
        3, entry["codec"], entry["dtype"], entry["base_dtype"], Transposed(rows, cols))
    raw, base = inputs(entry)
    size = DTYPES[entry["dtype"]].itemsize
    first, last = entry["elements"]
    span = (first * size, last * size)
    window = base_window(header, base, span, entry["base_dtype"])
    assert decode_frame(blob, window, base_dtype=entry["base_dtype"]) == raw[span[0] : span[1]]
    if rows > 1 and cols > 1:  # a 1×N or N×1 matrix is its own transpose in memory
        with pytest.raises(CorruptFrame):
            # The same bytes read in place are not what the frame was coded against.
            decode_frame(blob, base[span[0] * len(base) // len(raw) : span[1] * len(base) // len(raw)])
    with pytest.raises(IntegrityError):
        base_window(header, base + b"\0" * DTYPES[entry["base_dtype"]].itemsize, span, entry["base_dtype"])


@pytest.mark.parametrize("entry", V3, ids=[e["file"] for e in V3])
def test_v3_inputs_re_encode_to_the_committed_frame(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / "v3" / entry["file"]).read_bytes()
    raw, base = inputs(entry)
    rows, cols = entry["layout"]["transpose"]
    layout, source = Transposed(rows, cols), DTYPES[entry["base_dtype"]]
    first, last = entry["elements"]
    size = DTYPES[entry["dtype"]].itemsize
    again = encode_frame(get_codec(entry["codec"], entry["config"]), raw[first * size : last * size],
                         DTYPES[entry["dtype"]], layouts.gather(base, layout, source.itemsize, first, last),
                         base_dtype=source, layout=layout)  # fmt: skip
    assert again == blob


def test_a_pack_holds_v1_v2_and_v3_frames_alike() -> None:
    (pack,) = MANIFEST["packs"]
    data = (GOLDEN / "v3" / pack["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pack["sha256"]
    members = list(iter_pack(data))
    assert [read_frame_header(data[o : o + n]).version for o, n in members] == [1, 2, 3, 2, 3]
    for (offset, length), member in zip(members, pack["frames"], strict=True):
        assert data[offset : offset + length] == (GOLDEN / member).read_bytes()
