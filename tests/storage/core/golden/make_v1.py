"""Golden frames of format version 1: their inputs, and the deliberate way to (re)write them.

The committed frames must decode forever after, so this module only ever runs by hand:

    python -m tests.storage.core.golden.make_v1 --write

Inputs come from SHAKE-256 streams shaped with integer arithmetic only, so they are the same bytes on
every platform and numpy version; `recipe_bytes` rebuilds any input (tensor or base) from its recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from storage.core.codecs import get_codec
from storage.core.codecs.planes import word_dtype
from storage.core.dtypes import DTYPES
from tests.storage.core.golden.v1_writer import encode_frame_v1

HERE = Path(__file__).parent / "v1"

# (codec id, config, dtype, element count, tail bytes): one per codec config × a few dtypes.
CASES: list[tuple[str, dict[str, Any], str, int, int]] = [
    ("plain", {"skip": 1, "level": None}, "BF16", 3000, 0),
    ("plain", {"skip": 3, "level": None}, "BF16", 3001, 1),
    ("plain", {"skip": 1, "level": None}, "F32", 1500, 3),
    ("plain", {"skip": 1, "level": None}, "F16", 2000, 0),
    ("plain", {"skip": 1, "level": None}, "F64", 700, 5),
    ("plain", {"skip": 1, "level": None}, "C64", 500, 0),
    ("plain", {"skip": 0, "level": 3}, "I64", 600, 0),
    ("plain", {"skip": 0, "level": None}, "U8", 4000, 0),
    ("plain", {"skip": 0, "level": None}, "F8_E4M3", 4000, 0),
    ("plain", {"skip": 0, "level": None}, "F4", 999, 0),
    ("plain", {"skip": 1, "level": None}, "BF16", 0, 0),
    ("bitx", {"skip": 1, "level": None}, "BF16", 3000, 0),
    ("bitx", {"skip": 1, "level": None}, "F32", 1500, 2),
    ("bitx", {"skip": 0, "level": None}, "I32", 1000, 0),
    ("diff", {"group": False, "level": None}, "BF16", 3000, 1),
    ("diff", {"group": False, "level": None}, "F32", 1500, 0),
    ("diff", {"group": True, "level": None}, "BF16", 3000, 0),
    ("diff", {"group": True, "level": None}, "F64", 700, 0),
    ("diff", {"group": False, "level": 1}, "F8_E5M2", 3000, 0),
    ("diff", {"group": False, "level": None}, "I16", 2000, 1),
]


def _stream(label: str, nbytes: int) -> bytes:
    return hashlib.shake_256(label.encode()).digest(nbytes)


def recipe_bytes(recipe: dict[str, Any]) -> bytes:
    """The input bytes a recipe describes (generator "weights-v1", optionally "nudged-v1" of a base)."""
    dtype = DTYPES[recipe["dtype"]]
    word = word_dtype(dtype)
    count, tail, label = recipe["count"], recipe["tail"], recipe["label"]
    if recipe["generator"] == "nudged-v1":
        base = recipe_bytes({**recipe, "generator": "weights-v1"})
        words = np.frombuffer(base[: count * word.itemsize], dtype=word).copy()
        steps = np.frombuffer(_stream(label + "/nudge", count), dtype=np.uint8)
        nudged = steps % 3 == 0
        # Wrapping integer nudges of -2..+2: a few ulps for floats, just bits for everything else.
        words[nudged] += (steps[nudged] % 5).astype(word) - word.type(2)
        return words.tobytes() + base[count * word.itemsize :]
    if recipe["generator"] != "weights-v1":
        raise ValueError(f"unknown generator {recipe['generator']!r}")
    bits = word.itemsize * 8
    noise = np.frombuffer(_stream(label, count * word.itemsize), dtype=word)
    if dtype.kind in ("float", "complex") and bits > 8:
        exponent = min(dtype.exponent_bits, bits - 2)
        mantissa = bits - 1 - exponent
        picks = np.frombuffer(_stream(label + "/exp", count), dtype=np.uint8)
        field = word.type((1 << (exponent - 1)) - 2) - (picks % 6).astype(word)
        sign = noise >> (bits - 1) << (bits - 1)
        words = sign | field << mantissa | noise & word.type((1 << mantissa) - 1)
    elif dtype.kind in ("int", "uint") and bits > 8:
        words = noise % word.type(1000)
    else:
        words = noise & word.type(0x3F) | word.type(0x20)
    return words.astype(word).tobytes() + _stream(label + "/tail", tail)


def build() -> list[dict[str, Any]]:
    manifest = []
    for index, (codec_id, config, dtype_name, count, tail) in enumerate(CASES):
        codec = get_codec(codec_id, config)
        label = f"golden-v1/{index}"
        base_recipe = {"generator": "weights-v1", "label": label, "dtype": dtype_name, "count": count, "tail": tail}
        raw_recipe = {**base_recipe, "generator": "nudged-v1"} if codec.needs_base else base_recipe
        raw = recipe_bytes(raw_recipe)
        base = recipe_bytes(base_recipe) if codec.needs_base else None
        name = f"{index:02d}-{codec_id}-{dtype_name.lower()}.frame"
        blob = encode_frame_v1(codec, raw, DTYPES[dtype_name], base)
        manifest.append({
            "file": name, "codec": codec_id, "config": config, "dtype": dtype_name,
            "raw_sha256": hashlib.sha256(raw).hexdigest(), "raw_size": len(raw), "input": raw_recipe,
            "base": base_recipe if base is not None else None,
            "base_sha256": hashlib.sha256(base).hexdigest() if base is not None else None,
            "_blob": blob,
        })  # fmt: skip
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="overwrite the committed golden files")
    if not parser.parse_args().write:
        parser.error("golden files are rewritten only on purpose: pass --write")
    HERE.mkdir(parents=True, exist_ok=True)
    entries = build()
    for entry in entries:
        (HERE / entry["file"]).write_bytes(entry.pop("_blob"))
    (HERE / "manifest.json").write_text(json.dumps({"format_version": 1, "frames": entries}, indent=1) + "\n")


if __name__ == "__main__":
    main()
