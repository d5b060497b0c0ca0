"""Golden files of frame format version 2, of the v1 frames v1 had no golden file for, and of packs.

Committed files must decode forever after, so this module only ever runs by hand:

    python -m tests.storage.core.golden.make_v2 --write

- `v2/`: every v1 case re-encoded by the production writer, plus the cast-predicted deltas v2 records
  (BF16 and F16 from an F32 base, F32 from F64), from small deterministic inputs with NaN payloads,
  signed zeros, infinities, denormals and rounding ties in the base.
- `v1-cast/`: the same cast cases written by the v1 writer (tests/storage/core/golden/v1_writer.py),
  which recorded no cast: what a v1 deployment stored, decodable only with the catalog's base dtype.
- `packs/`: packs (layout version 1) holding v1, v1-cast and v2 frames back to back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from storage.core import casts
from storage.core.codecs import get_codec
from storage.core.dtypes import DTYPES
from storage.core.frames import encode_frame
from storage.core.packs import PackBuilder
from tests.storage.core.golden.make_v1 import CASES, recipe_bytes
from tests.storage.core.golden.v1_writer import encode_frame_v1

ROOT = Path(__file__).parent

# (codec id, config, target dtype, base dtype, element count)
CAST_CASES: list[tuple[str, dict[str, Any], str, str, int]] = [
    ("bitx", {"skip": 1, "level": None}, "BF16", "F32", 1500),
    ("diff", {"group": False, "level": None}, "BF16", "F32", 1500),
    ("diff", {"group": True, "level": None}, "BF16", "F32", 1500),
    ("bitx", {"skip": 1, "level": None}, "F16", "F32", 1200),
    ("diff", {"group": False, "level": None}, "F16", "F32", 1200),
    ("diff", {"group": False, "level": None}, "F32", "F64", 700),
]

# Base words that exercise the rounding: signed zeros, infinities, a NaN with a payload, a signalling
# NaN, the smallest and largest denormal, and two round-to-nearest-even ties.
F32_SPECIALS = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC01234, 0x7F800001, 0x00000001,
                0x007FFFFF, 0x3F808000, 0x3F818000, 0x477FF000, 0x33000000]  # fmt: skip
F64_SPECIALS = [0, 1 << 63, 0x7FF0000000000000, 0x7FF8000000001234, 1, 0x3FF0000010000000,
                0x47EFFFFFF0000000]  # fmt: skip


def cast_recipe_bytes(recipe: dict[str, Any]) -> bytes:
    """Inputs of the cast cases: generator "specials-v2" (a base: weights-v1 with special words first)
    or "cast-v2" (a target: the base's cast prediction, then nudged like nudged-v1)."""
    if recipe["generator"] == "specials-v2":
        base = recipe_bytes({**recipe, "generator": "weights-v1"})
        word = np.dtype("<u4") if recipe["dtype"] == "F32" else np.dtype("<u8")
        words = np.frombuffer(base, dtype=word).copy()
        specials = F32_SPECIALS if recipe["dtype"] == "F32" else F64_SPECIALS
        words[: len(specials)] = np.array(specials, dtype=word)
        return words.tobytes()
    if recipe["generator"] != "cast-v2":
        return recipe_bytes(recipe)
    base_recipe = recipe["base"]
    predicted = casts.predict(cast_recipe_bytes(base_recipe), DTYPES[base_recipe["dtype"]], DTYPES[recipe["dtype"]])
    word = np.dtype("<u2") if DTYPES[recipe["dtype"]].itemsize == 2 else np.dtype("<u4")
    words = np.frombuffer(predicted, dtype=word).copy()
    steps = np.frombuffer(hashlib.shake_256((recipe["label"] + "/nudge").encode()).digest(len(words)), dtype=np.uint8)
    nudged = steps % 3 == 0
    words[nudged] += (steps[nudged] % 5).astype(word) - word.type(2)
    return words.tobytes()


def _entry(name: str, codec_id: str, config: dict[str, Any], dtype: str, raw: bytes, raw_recipe: dict[str, Any],
           base: bytes | None, base_recipe: dict[str, Any] | None, base_dtype: str | None,
           blob: bytes) -> dict[str, Any]:  # fmt: skip
    return {
        "file": name, "codec": codec_id, "config": config, "dtype": dtype,
        "raw_sha256": hashlib.sha256(raw).hexdigest(), "raw_size": len(raw), "input": raw_recipe,
        "base": base_recipe, "base_dtype": base_dtype,
        "base_sha256": hashlib.sha256(base).hexdigest() if base is not None else None,
        "_blob": blob,
    }  # fmt: skip


def cast_inputs(index: int, dtype: str, base_dtype: str, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    label = f"golden-v2/cast/{index}"
    base_recipe = {"generator": "specials-v2", "label": label, "dtype": base_dtype, "count": count, "tail": 0}
    return {"generator": "cast-v2", "label": label, "dtype": dtype, "base": base_recipe}, base_recipe


def build_v2() -> list[dict[str, Any]]:
    entries = []
    for index, (codec_id, config, dtype, count, tail) in enumerate(CASES):
        codec = get_codec(codec_id, config)
        label = f"golden-v1/{index}"
        base_recipe = {"generator": "weights-v1", "label": label, "dtype": dtype, "count": count, "tail": tail}
        raw_recipe = {**base_recipe, "generator": "nudged-v1"} if codec.needs_base else base_recipe
        raw, base = recipe_bytes(raw_recipe), recipe_bytes(base_recipe) if codec.needs_base else None
        blob = encode_frame(codec, raw, DTYPES[dtype], base)
        entries.append(_entry(f"{index:02d}-{codec_id}-{dtype.lower()}.frame", codec_id, config, dtype, raw,
                              raw_recipe, base, base_recipe if base is not None else None,
                              dtype if base is not None else None, blob))  # fmt: skip
    for index, (codec_id, config, dtype, base_dtype, count) in enumerate(CAST_CASES, start=len(CASES)):
        raw_recipe, base_recipe = cast_inputs(index, dtype, base_dtype, count)
        raw, base = cast_recipe_bytes(raw_recipe), cast_recipe_bytes(base_recipe)
        blob = encode_frame(get_codec(codec_id, config), raw, DTYPES[dtype], base, base_dtype=DTYPES[base_dtype])
        name = f"{index:02d}-{codec_id}-{dtype.lower()}-from-{base_dtype.lower()}.frame"
        entries.append(_entry(name, codec_id, config, dtype, raw, raw_recipe, base, base_recipe, base_dtype, blob))
    return entries


def build_v1_cast() -> list[dict[str, Any]]:
    entries = []
    for index, (codec_id, config, dtype, base_dtype, count) in enumerate(CAST_CASES):
        raw_recipe, base_recipe = cast_inputs(index + len(CASES), dtype, base_dtype, count)
        raw, base = cast_recipe_bytes(raw_recipe), cast_recipe_bytes(base_recipe)
        blob = encode_frame_v1(get_codec(codec_id, config), raw, DTYPES[dtype], base, base_dtype=DTYPES[base_dtype])
        name = f"{index:02d}-{codec_id}-{dtype.lower()}-from-{base_dtype.lower()}.frame"
        entries.append(_entry(name, codec_id, config, dtype, raw, raw_recipe, base, base_recipe, base_dtype, blob))
    return entries


# Packs: (file, frames as "directory/file" of the golden frames above, in pack order).
PACKS = [
    ("00-mixed.pack", ["v1/00-plain-bf16.frame", "v1/11-bitx-bf16.frame", "v1-cast/00-bitx-bf16-from-f32.frame",
                       "v2/00-plain-bf16.frame", "v2/14-diff-bf16.frame", "v2/21-diff-bf16-from-f32.frame",
                       "v2/10-plain-bf16.frame"]),
    ("01-single.pack", ["v2/23-bitx-f16-from-f32.frame"]),
]  # fmt: skip


def build_packs(frames: dict[str, bytes]) -> list[tuple[str, list[str], bytes]]:
    out = []
    for name, members in PACKS:
        builder = PackBuilder(target_bytes=1 << 30, solo_bytes=1 << 30)
        for member in members:
            builder.add(frames[member])
        builder.seal()
        (sealed,) = builder.take_sealed()
        out.append((name, members, sealed.data))
    return out


def _write(directory: Path, version: int, entries: list[dict[str, Any]]) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for entry in entries:
        blob = entry.pop("_blob")
        (directory / entry["file"]).write_bytes(blob)
        blobs[f"{directory.name}/{entry['file']}"] = blob
    document = {"format_version": version, "frames": entries}
    (directory / "manifest.json").write_text(json.dumps(document, indent=1) + "\n")
    return blobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="overwrite the committed golden files")
    if not parser.parse_args().write:
        parser.error("golden files are rewritten only on purpose: pass --write")
    frames = {f"v1/{p.name}": p.read_bytes() for p in (ROOT / "v1").glob("*.frame")}
    frames |= _write(ROOT / "v1-cast", 1, build_v1_cast())
    frames |= _write(ROOT / "v2", 2, build_v2())
    packs = ROOT / "packs"
    packs.mkdir(exist_ok=True)
    manifest = []
    for name, members, data in build_packs(frames):
        (packs / name).write_bytes(data)
        manifest.append({"file": name, "frames": members, "sha256": hashlib.sha256(data).hexdigest()})
    (packs / "manifest.json").write_text(json.dumps({"pack_version": 1, "packs": manifest}, indent=1) + "\n")


if __name__ == "__main__":
    main()
