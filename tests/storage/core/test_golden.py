"""Frames written by format version 1 decode, byte-exact, forever after (never regenerated here)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storage.core.frames import decode_frame, read_frame_header
from tests.storage.core.golden.make_v1 import recipe_bytes

GOLDEN = Path(__file__).parent / "golden" / "v1"
ENTRIES = json.loads((GOLDEN / "manifest.json").read_text())["frames"]


def test_golden_set_is_small_and_covers_every_codec() -> None:
    assert {entry["codec"] for entry in ENTRIES} >= {"plain", "bitx", "diff"}
    assert sum((GOLDEN / entry["file"]).stat().st_size for entry in ENTRIES) < 200_000


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["file"] for entry in ENTRIES])
def test_golden_frame_decodes(entry: dict) -> None:
    blob = (GOLDEN / entry["file"]).read_bytes()
    header = read_frame_header(blob)
    assert (header.version, header.codec_id, header.dtype) == (1, entry["codec"], entry["dtype"])
    base = None
    if entry["base"] is not None:
        base = recipe_bytes(entry["base"])
        assert hashlib.sha256(base).hexdigest() == entry["base_sha256"], "the input generator changed"
    raw = decode_frame(blob, base)
    assert len(raw) == entry["raw_size"]
    assert hashlib.sha256(raw).hexdigest() == entry["raw_sha256"]
