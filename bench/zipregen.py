"""What regenerating the geatnet series' zip structure from recipes would store, against storing it.

    python3 bench/zipregen.py --corpus DIR

For each `.pth` epoch of the dev corpus's geatnet series: the structure runs (local headers, descriptors,
small members, central directory, end records: every byte but data.pkl and the storages) coded as today's
opaque segments (one U8 frame per run, identical runs stored once across the series), against the
recipe that rebuilds them byte for byte (storage/core/formats/zipregen.py: its shape part, identical
across the series, stored once, and its varying part per epoch, each one U8 frame). Frames are coded by
`encode_tensor`, as ingest codes an opaque segment; bytes are frame bytes, headers included.

Measured (2026-12-03, torch 2.13 epochs of the dev corpus): opaque runs 49,204 bytes for the six epochs
(52 runs of 11,161 structure bytes each, ~8.2 KB stored per epoch), recipes 2,528 (0.051x: the 1,046-byte
shape stored once, a 298-byte varying part per epoch). Not yet what ingest stores: see the module.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.core.dtypes import DTYPES  # noqa: E402
from storage.core.formats import torchzip, zipregen  # noqa: E402
from storage.core.frames import encode_tensor  # noqa: E402

U8 = DTYPES["U8"]
LIMIT = 100_000_000


def frame_bytes(blob: bytes, seen: set[str]) -> int:
    """Stored bytes of one opaque segment holding `blob`: 0 when the series already stored it."""
    digest = hashlib.sha256(blob).hexdigest()
    if digest in seen or not blob:
        return 0
    seen.add(digest)
    return sum(len(f) for f in encode_tensor(blob, U8).frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    args = parser.parse_args()
    files = sorted((args.corpus / "series/geatnet-atomprop").glob("epoch_*/*.pth"))
    runs_seen: set[str] = set()
    recipe_seen: set[str] = set()
    print("| epoch | structure bytes | runs | stored as opaque runs | recipe (shape + varying) | stored as recipe |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0, 0]
    for path in files:
        data = path.read_bytes()

        def read(a: int, b: int, data: bytes = data) -> bytes:
            return data[a:b]

        directory, members, ends = torchzip._members(read, len(data), max_header_bytes=LIMIT)
        spans = torchzip.read_storages(read, members, ends, max_header_bytes=LIMIT, max_tensors=100_000)
        recipe = zipregen.derive(read, len(data), directory, spans.keys())
        if recipe is None:
            print(f"| {path.name} | no recipe: the structure does not regenerate | | | | |")
            continue
        built = zipregen.rebuild(recipe)
        if zipregen.assemble(recipe, [data[a : a + n] for a, n in built.spans]) != data:
            raise SystemExit(f"{path.name}: the recipe does not rebuild the file")
        as_runs = sum(frame_bytes(run, runs_seen) for _, run in built.runs)
        shape, varying = zipregen.encode(recipe)
        as_recipe = frame_bytes(shape, recipe_seen) + frame_bytes(varying, recipe_seen)
        totals[0] += as_runs
        totals[1] += as_recipe
        structure = sum(len(run) for _, run in built.runs)
        print(f"| {path.name} | {structure:,} | {len(built.runs)} | {as_runs:,} | "
              f"{len(shape):,} + {len(varying):,} | {as_recipe:,} |")  # fmt: skip
    print(f"| total | | | {totals[0]:,} | | {totals[1]:,} ({totals[1] / max(totals[0], 1):.3f}x) |")


if __name__ == "__main__":
    main()
