"""Committed golden files decode, byte-exact, forever after (never regenerated here).

v1 frames (golden/v1, and golden/v1-cast for the cast-predicted deltas v1 did not record), v2 frames
(golden/v2) and packs holding both (golden/packs). The v2 inputs must also re-encode to exactly the
committed v2 frames, and the v1 writer kept for the goldens must reproduce the v1 frames.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from storage.core.codecs import CorruptFrame, get_codec
from storage.core.dtypes import DTYPES
from storage.core.errors import IntegrityError, InternalError
from storage.core.frames import decode_frame, encode_frame, read_frame_header
from storage.core.packs import PackBuilder, iter_pack
from tests.storage.core.golden.make_v2 import cast_recipe_bytes
from tests.storage.core.golden.v1_writer import encode_frame_v1

GOLDEN = Path(__file__).parent / "golden"


def entries(directory: str) -> list[dict[str, Any]]:
    return json.loads((GOLDEN / directory / "manifest.json").read_text())["frames"]


V1, V1_CAST, V2 = entries("v1"), entries("v1-cast"), entries("v2")
PACKS = json.loads((GOLDEN / "packs" / "manifest.json").read_text())["packs"]


def inputs(entry: dict[str, Any]) -> tuple[bytes, bytes | None]:
    raw = cast_recipe_bytes(entry["input"])
    assert hashlib.sha256(raw).hexdigest() == entry["raw_sha256"], "the input generator changed"
    base = cast_recipe_bytes(entry["base"]) if entry["base"] is not None else None
    if base is not None:
        assert hashlib.sha256(base).hexdigest() == entry["base_sha256"], "the input generator changed"
    return raw, base


def test_golden_set_is_small_and_covers_every_codec_and_cast() -> None:
    for directory, listed in (("v1", V1), ("v2", V2)):
        assert {entry["codec"] for entry in listed} >= {"plain", "bitx", "diff"}
        assert sum((GOLDEN / directory / entry["file"]).stat().st_size for entry in listed) < 200_000
    casts = {(e["base_dtype"], e["dtype"]) for e in V2 if e["base_dtype"] not in (None, e["dtype"])}
    assert casts == {("F32", "BF16"), ("F32", "F16"), ("F64", "F32")}
    assert {(e["base_dtype"], e["dtype"]) for e in V1_CAST} == casts


@pytest.mark.parametrize("entry", V1, ids=[entry["file"] for entry in V1])
def test_v1_frame_decodes(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / "v1" / entry["file"]).read_bytes()
    header = read_frame_header(blob)
    expected = (1, entry["codec"], entry["dtype"], None)
    assert (header.version, header.codec_id, header.dtype, header.base_dtype) == expected
    raw, base = inputs(entry)
    assert decode_frame(blob, base) == raw


@pytest.mark.parametrize("entry", V1, ids=[entry["file"] for entry in V1])
def test_the_v1_writer_kept_for_goldens_reproduces_v1(entry: dict[str, Any]) -> None:
    raw, base = inputs(entry)
    blob = encode_frame_v1(get_codec(entry["codec"], entry["config"]), raw, DTYPES[entry["dtype"]], base)
    assert blob == (GOLDEN / "v1" / entry["file"]).read_bytes()


@pytest.mark.parametrize("entry", V1, ids=[entry["file"] for entry in V1])
def test_v2_changed_the_header_only(entry: dict[str, Any]) -> None:
    """Codec payloads are what v1 wrote: the format version moved for the header, not the coding."""
    raw, base = inputs(entry)
    old = (GOLDEN / "v1" / entry["file"]).read_bytes()
    new = encode_frame(get_codec(entry["codec"], entry["config"]), raw, DTYPES[entry["dtype"]], base)
    old_header, new_header = read_frame_header(old), read_frame_header(new)
    assert old[old_header.header_size :] == new[new_header.header_size :]
    assert (new_header.version, new_header.base_dtype) == (2, entry["dtype"] if base is not None else None)


@pytest.mark.parametrize("entry", V1_CAST, ids=[entry["file"] for entry in V1_CAST])
def test_v1_cast_frame_decodes_with_the_catalogs_base_dtype(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / "v1-cast" / entry["file"]).read_bytes()
    raw, base = inputs(entry)
    assert read_frame_header(blob).base_dtype is None  # v1 did not record the cast: the catalog knows
    assert decode_frame(blob, base, base_dtype=entry["base_dtype"]) == raw
    with pytest.raises(InternalError, match="base has"):
        decode_frame(blob, base)  # without the catalog's dtype, the wide base is taken for the frame's own


@pytest.mark.parametrize("entry", V2, ids=[entry["file"] for entry in V2])
def test_v2_frame_decodes_and_reencodes_exactly(entry: dict[str, Any]) -> None:
    blob = (GOLDEN / "v2" / entry["file"]).read_bytes()
    header = read_frame_header(blob)
    assert (header.version, header.codec_id, header.dtype, header.base_dtype) == (
        2, entry["codec"], entry["dtype"], entry["base_dtype"])  # fmt: skip
    raw, base = inputs(entry)
    # The frame says how its base is used: no dtype from outside is needed, and a wrong one is refused.
    assert decode_frame(blob, base) == raw
    assert decode_frame(blob, base, base_dtype=entry["base_dtype"]) == raw
    if base is not None:
        with pytest.raises(IntegrityError):
            decode_frame(blob, base, base_dtype="F64" if entry["base_dtype"] != "F64" else "F32")
    base_dtype = DTYPES[entry["base_dtype"]] if entry["base_dtype"] else None
    again = encode_frame(get_codec(entry["codec"], entry["config"]), raw, DTYPES[entry["dtype"]], base,
                         base_dtype=base_dtype)  # fmt: skip
    assert again == blob


@pytest.mark.parametrize("pack", PACKS, ids=[pack["file"] for pack in PACKS])
def test_golden_pack_walks_decodes_and_rebuilds(pack: dict[str, Any]) -> None:
    data = (GOLDEN / "packs" / pack["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pack["sha256"]
    by_file = {f"{d}/{e['file']}": e for d, listed in (("v1", V1), ("v1-cast", V1_CAST), ("v2", V2)) for e in listed}
    builder = PackBuilder(target_bytes=1 << 30, solo_bytes=1 << 30)
    for (offset, length), member in zip(iter_pack(data), pack["frames"], strict=True):
        blob = data[offset : offset + length]
        assert blob == (GOLDEN / member).read_bytes()
        entry = by_file[member]
        raw, base = inputs(entry)
        assert decode_frame(blob, base, base_dtype=entry.get("base_dtype")) == raw
        builder.add(blob)
    builder.seal()
    assert builder.take_sealed()[0].data == data


def test_a_damaged_golden_pack_is_an_integrity_error() -> None:
    data = bytearray((GOLDEN / "packs" / "00-mixed.pack").read_bytes())
    with pytest.raises(IntegrityError):
        list(iter_pack(bytes(data[:-1])))
    data[12 + 5] ^= 0xFF  # the first frame's flags byte, covered by its header crc
    offset, length = next(iter_pack(bytes(data)))
    with pytest.raises(CorruptFrame):
        decode_frame(bytes(data[offset : offset + length]))
