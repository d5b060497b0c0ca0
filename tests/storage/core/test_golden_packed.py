"""The committed `packed` golden frames decode, byte-exact, and the writer still produces them exactly
(never regenerated here; see golden/make_packed_v2.py). The earlier golden sets are test_golden.py's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from storage.core.codecs import CorruptFrame, entropy, get_codec, reference
from storage.core.codecs.planes import packed_plane_sizes, word_bytes
from storage.core.dtypes import DTYPES
from storage.core.frames import decode_frame, encode_frame, read_frame_header
from tests.storage.core.golden.make_packed_v2 import packed_recipe_bytes

GOLDEN = Path(__file__).parent / "golden" / "packed-v2"
ENTRIES: list[dict[str, Any]] = json.loads((GOLDEN / "manifest.json").read_text())["frames"]


def _raw(entry: dict[str, Any]) -> bytes:
    raw = packed_recipe_bytes(entry["input"])
    assert hashlib.sha256(raw).hexdigest() == entry["raw_sha256"], "the input generator changed"
    return raw


def test_golden_set_is_small_and_covers_the_edge_cases() -> None:
    assert {entry["codec"] for entry in ENTRIES} == {"packed"}
    assert sum((GOLDEN / entry["file"]).stat().st_size for entry in ENTRIES) < 100_000
    assert {entry["raw_size"] % 2 for entry in ENTRIES if entry["dtype"] == "BF16"} == {0, 1}
    assert 0 in {entry["raw_size"] for entry in ENTRIES}
    assert "specials-packed" in {entry["input"]["generator"] for entry in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["file"] for entry in ENTRIES])
def test_packed_frame_decodes_and_reencodes_exactly(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / entry["file"]).read_bytes()
    header = read_frame_header(blob)
    assert (header.version, header.codec_id, header.dtype, header.base_dtype) == (2, "packed", entry["dtype"], None)
    raw, dtype = _raw(entry), DTYPES[entry["dtype"]]
    assert decode_frame(blob) == raw
    # The stored planes are the numpy reference's, cut by the documented plane sizes.
    planes = entropy.decode_planes(blob[header.header_size :], packed_plane_sizes(word_bytes(dtype), len(raw)))
    assert b"".join(bytes(p) for p in planes) == reference.split_packed(raw, dtype, entry["config"]["skip"])
    assert encode_frame(get_codec("packed", entry["config"]), raw, dtype) == blob


def test_a_damaged_packed_frame_is_corrupt_not_wrong_bytes() -> None:
    blob = bytearray((GOLDEN / "00-packed-bf16.frame").read_bytes())
    header = read_frame_header(bytes(blob))
    blob[header.header_size + 20] ^= 0x10  # inside the Huffman-coded first plane
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(blob))
    blob = bytearray((GOLDEN / "00-packed-bf16.frame").read_bytes())
    blob[-100] ^= 0x01  # inside the raw 6-bit plane: only the frame's crc can tell
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(blob))
