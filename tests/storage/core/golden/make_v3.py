"""Golden files of frame format version 3: delta frames that read their base transposed.

Committed files must decode forever after, so this module only ever runs by hand:

    python -m tests.storage.core.golden.make_v3 --write

- `v3/*.frame`: delta frames of a target that is its base transposed (then cast-predicted when the
  dtypes differ, then nudged), each covering target elements [first, last) of it: whole tensors, a
  frame in the middle of one (its elements start inside a target row), square, 1×N and N×1 matrices.
  Bases are the v1/v2 generators' deterministic inputs (with NaN payloads, signed zeros, infinities and
  denormals in the F32/F64 ones).
- `v3/00-mixed.pack`: a pack (layout version 1) holding v1, v2 and v3 frames back to back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from storage.core import casts, layouts
from storage.core.codecs import get_codec
from storage.core.codecs.planes import word_dtype
from storage.core.dtypes import DTYPES
from storage.core.frames import encode_frame
from storage.core.layouts import Transposed
from storage.core.packs import PackBuilder
from tests.storage.core.golden.make_v2 import cast_recipe_bytes

ROOT = Path(__file__).parent
HERE = ROOT / "v3"

# (codec id, config, target dtype, base dtype, base rows, base cols, first, last target element or None)
CASES: list[tuple[str, dict[str, Any], str, str, int, int, int, int | None]] = [
    ("bitx", {"skip": 1, "level": None}, "BF16", "BF16", 48, 20, 0, None),
    ("diff", {"group": True, "level": None}, "BF16", "BF16", 40, 33, 101, 907),
    ("diff", {"group": False, "level": None}, "F32", "F32", 30, 25, 0, None),
    ("diff", {"group": True, "level": None}, "BF16", "F32", 32, 24, 0, None),
    ("bitx", {"skip": 1, "level": None}, "F16", "F32", 20, 40, 17, 613),
    ("diff", {"group": False, "level": None}, "F32", "F64", 16, 30, 0, None),
    ("diff", {"group": False, "level": None}, "BF16", "BF16", 24, 24, 0, None),
    ("bitx", {"skip": 1, "level": None}, "F32", "F32", 1, 50, 0, None),
    ("diff", {"group": False, "level": None}, "F16", "F16", 60, 1, 5, 60),
]


def base_recipe(index: int, dtype: str, rows: int, cols: int) -> dict[str, Any]:
    generator = "specials-v2" if dtype in ("F32", "F64") else "weights-v1"
    return {"generator": generator, "label": f"golden-v3/{index}", "dtype": dtype, "count": rows * cols, "tail": 0}


def target_recipe(index: int, dtype: str, base: dict[str, Any], rows: int, cols: int) -> dict[str, Any]:
    return {"generator": "transposed-v3", "label": f"golden-v3/{index}", "dtype": dtype, "base": base,
            "rows": rows, "cols": cols}  # fmt: skip


def v3_recipe_bytes(recipe: dict[str, Any]) -> bytes:
    """Inputs of the v3 cases: generator "transposed-v3" (the base transposed, cast-predicted to the
    target dtype, then nudged by -2..+2 in one word of three), or any v1/v2 generator."""
    if recipe["generator"] != "transposed-v3":
        return cast_recipe_bytes(recipe)
    source = recipe["base"]
    layout = Transposed(recipe["rows"], recipe["cols"])
    flipped = layouts.transpose(cast_recipe_bytes(source), layout, DTYPES[source["dtype"]].itemsize)
    if source["dtype"] != recipe["dtype"]:
        flipped = casts.predict(flipped, DTYPES[source["dtype"]], DTYPES[recipe["dtype"]])
    word = word_dtype(DTYPES[recipe["dtype"]])
    words = np.frombuffer(flipped, dtype=word).copy()
    steps = np.frombuffer(hashlib.shake_256((recipe["label"] + "/nudge").encode()).digest(len(words)), dtype=np.uint8)
    nudged = steps % 3 == 0
    words[nudged] += (steps[nudged] % 5).astype(word) - word.type(2)
    return words.tobytes()


def build_v3() -> list[dict[str, Any]]:
    entries = []
    for index, (codec_id, config, dtype, base_dtype, rows, cols, first, last) in enumerate(CASES):
        b_recipe = base_recipe(index, base_dtype, rows, cols)
        t_recipe = target_recipe(index, dtype, b_recipe, rows, cols)
        raw, base = v3_recipe_bytes(t_recipe), v3_recipe_bytes(b_recipe)
        layout = Transposed(rows, cols)
        last = rows * cols if last is None else last
        size = DTYPES[dtype].itemsize
        gathered = layouts.gather(base, layout, DTYPES[base_dtype].itemsize, first, last)
        blob = encode_frame(get_codec(codec_id, config), raw[first * size : last * size], DTYPES[dtype], gathered,
                            base_dtype=DTYPES[base_dtype], layout=layout)  # fmt: skip
        name = f"{index:02d}-{codec_id}-{dtype.lower()}-from-{base_dtype.lower()}-t{rows}x{cols}.frame"
        entries.append({
            "file": name, "codec": codec_id, "config": config, "dtype": dtype, "base_dtype": base_dtype,
            "layout": {"transpose": [rows, cols]}, "elements": [first, last], "input": t_recipe, "base": b_recipe,
            "raw_sha256": hashlib.sha256(raw).hexdigest(), "base_sha256": hashlib.sha256(base).hexdigest(),
            "_blob": blob,
        })  # fmt: skip
    return entries


PACK = ("00-mixed.pack", ["v1/00-plain-bf16.frame", "v2/14-diff-bf16.frame", "v3/00-bitx-bf16-from-bf16-t48x20.frame",
                          "v2/21-diff-bf16-from-f32.frame", "v3/03-diff-bf16-from-f32-t32x24.frame"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="overwrite the committed golden files")
    if not parser.parse_args().write:
        parser.error("golden files are rewritten only on purpose: pass --write")
    HERE.mkdir(exist_ok=True)
    entries = build_v3()
    frames = {f"{d}/{p.name}": p.read_bytes() for d in ("v1", "v2") for p in (ROOT / d).glob("*.frame")}
    for entry in entries:
        blob = entry.pop("_blob")
        (HERE / entry["file"]).write_bytes(blob)
        frames[f"v3/{entry['file']}"] = blob
    builder = PackBuilder(target_bytes=1 << 30, solo_bytes=1 << 30)
    for member in PACK[1]:
        builder.add(frames[member])
    builder.seal()
    (sealed,) = builder.take_sealed()
    (HERE / PACK[0]).write_bytes(sealed.data)
    pack = {"file": PACK[0], "frames": PACK[1], "sha256": hashlib.sha256(sealed.data).hexdigest()}
    document = {"format_version": 3, "frames": entries, "packs": [pack]}
    (HERE / "manifest.json").write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
