"""Golden frames of the `packed` codec (frame format version 2), and the deliberate way to write them.

The committed frames must decode forever after, so this module only ever runs by hand:

    python -m tests.storage.core.golden.make_packed_v2 --write

`packed` came after the v2 golden set was committed, so its frames live in their own directory
(`packed-v2/`) and the earlier golden files stay exactly as they were. Inputs come from the v1 recipes
(SHAKE-256 streams shaped with integer arithmetic, the same bytes everywhere), plus one generator here,
"specials-packed", that puts the BF16 words that break codecs (NaNs with payloads, ±0, ±inf,
denormals, the largest finite) first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES
from storage.core.frames import encode_frame
from tests.storage.core.golden.make_v1 import recipe_bytes

HERE = Path(__file__).parent / "packed-v2"

PACKED = {"skip": 3, "level": None}
# (config, dtype, element count, tail bytes, generator)
CASES: list[tuple[dict[str, Any], str, int, int, str]] = [
    (PACKED, "BF16", 3000, 0, "weights-v1"),
    (PACKED, "BF16", 3001, 1, "weights-v1"),
    (PACKED, "BF16", 1003, 0, "specials-packed"),
    (PACKED, "BF16", 0, 0, "weights-v1"),
    (PACKED, "BF16", 1, 1, "weights-v1"),
    ({"skip": 1, "level": 3}, "BF16", 2002, 0, "weights-v1"),
    (PACKED, "F16", 2000, 0, "weights-v1"),
    (PACKED, "F32", 1500, 3, "weights-v1"),
    (PACKED, "F64", 701, 5, "weights-v1"),
    ({"skip": 0, "level": None}, "U8", 4001, 0, "weights-v1"),
]

BF16_SPECIALS = [0x7FC1, 0x7F81, 0xFFFF, 0xFFC0, 0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x007F,
                 0x7F7F, 0x3F80, 0xBF80]  # fmt: skip


def packed_recipe_bytes(recipe: dict[str, Any]) -> bytes:
    """The bytes of a recipe: "specials-packed" (BF16 weights-v1 with the special words first) or a v1
    generator."""
    if recipe["generator"] != "specials-packed":
        return recipe_bytes(recipe)
    data = recipe_bytes({**recipe, "generator": "weights-v1"})
    words = np.frombuffer(data, dtype="<u2").copy()
    words[: len(BF16_SPECIALS)] = np.array(BF16_SPECIALS, dtype="<u2")
    return words.tobytes()


def build() -> list[dict[str, Any]]:
    entries = []
    for index, (config, dtype, count, tail, generator) in enumerate(CASES):
        recipe = {"generator": generator, "label": f"golden-packed-v2/{index}", "dtype": dtype, "count": count,
                  "tail": tail}  # fmt: skip
        raw = packed_recipe_bytes(recipe)
        blob = encode_frame(get_codec("packed", config), raw, DTYPES[dtype])
        entries.append({
            "file": f"{index:02d}-packed-{dtype.lower()}.frame", "codec": "packed", "config": config,
            "dtype": dtype, "raw_sha256": hashlib.sha256(raw).hexdigest(), "raw_size": len(raw),
            "input": recipe, "_blob": blob,
        })  # fmt: skip
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="overwrite the committed golden files")
    if not parser.parse_args().write:
        parser.error("golden files are rewritten only on purpose: pass --write")
    HERE.mkdir(parents=True, exist_ok=True)
    entries = build()
    for entry in entries:
        (HERE / entry["file"]).write_bytes(entry.pop("_blob"))
    (HERE / "manifest.json").write_text(json.dumps({"format_version": 2, "frames": entries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
