"""Would the geatnet `.pth` series store at no more than its safetensors conversion (issue 11) once the
zip structure (zipregen) and data.pkl (picklegen) are stored as recipes?

    python3 bench/picklegen.py --corpus DIR

In one run, on the six epochs of the dev corpus's geatnet series: each epoch ingested as today (storages
as tensors, data.pkl and the structure runs between storages as opaque segments) and converted to
safetensors and ingested (the issue's reference). The projections replace, in today's stored bytes,
the opaque runs and data.pkl's segment by the recipes' parts, each stored as ingest codes an opaque
segment (one U8 frame by `encode_tensor`, headers included; identical parts stored once across the
series), as bench/zipregen.py counts them:
- zip recipe only (what the zipwire branch wires);
- zip + pickle recipes, four parts per file (zip shape, zip varying, pickle template, pickle varying);
- the same in two parts per file (zip shape + pickle template in one, both varying parts in the other);
- two parts, and the zip's CRC-32s left out of its varying part (a reader would compute them from the
  members' data it rebuilds): a what-if, not what zipregen encodes;
- the floor of that: the varying part at its raw size, as if kept with no frame (in a catalog row).
Each recipe is checked to rebuild its file's bytes before it is counted.

Measured (2026-12-03, same bytes in three runs): safetensors 3,080,305 stored; today 3,131,198 (+50,893);
zip recipe 3,084,522 (+4,217); zip + pickle recipes 3,082,797 in four parts (+2,492), 3,082,750 in two
(+2,445); CRC-32s computed on read 3,081,319 (+1,014); its floor 3,081,088 (+783). The pickle's template
(4,530 raw bytes, 828 stored) is smaller than the safetensors header (947 stored) and shared by the
series; what stays over is per epoch: the zip's CRC-32s (200 bytes), `.data/serialization_id` (40
random digits), the archive prefix, and a frame (63 bytes at least) per varying part.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.torchzip import new_hub, stored  # noqa: E402
from bench.zipregen import LIMIT, frame_bytes  # noqa: E402
from storage.core.formats import picklegen, torchzip, zipregen  # noqa: E402
from tests.hubs import push  # noqa: E402


def main() -> None:
    import torch
    from safetensors.torch import save

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    args = parser.parse_args()
    files = sorted((args.corpus / "series/geatnet-atomprop").glob("epoch_*/*.pth"))
    if not files:
        parser.error("--corpus must name the dev corpus directory")
    started = time.monotonic()
    rows = dict.fromkeys(["today", "safetensors", "runs", "pkl", "zip", "four", "two", "two_no_crc", "raw"], 0)
    seen: dict[str, set[str]] = {k: set() for k in rows}
    parts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        today, reference = new_hub(Path(tmp) / "today"), new_hub(Path(tmp) / "safetensors")
        for i, path in enumerate(files):
            data = path.read_bytes()
            repo = f"geatnet/epoch_{i + 1}"
            rows["today"] += stored(today, push(today, repo, {"model.pth": data}))
            converted = save(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
            rows["safetensors"] += stored(reference, push(reference, repo, {"model.safetensors": converted}))

            def read(a: int, b: int, data: bytes = data) -> bytes:
                return data[a:b]

            directory, members, ends = torchzip._members(read, len(data), max_header_bytes=LIMIT)
            spans = torchzip.read_storages(read, members, ends, max_header_bytes=LIMIT, max_tensors=100_000)
            zip_recipe = zipregen.derive(read, len(data), directory, spans.keys())
            pkl = zipfile.ZipFile(io.BytesIO(data)).read(next(n for n in spans if n.endswith(b"/data.pkl")).decode())
            pkl_recipe = picklegen.derive(pkl)
            if zip_recipe is None or pkl_recipe is None:
                raise SystemExit(f"{path.name}: no {'zip' if zip_recipe is None else 'pickle'} recipe")
            built = zipregen.rebuild(zip_recipe)
            if zipregen.assemble(zip_recipe, [data[a : a + n] for a, n in built.spans]) != data:
                raise SystemExit(f"{path.name}: the zip recipe does not rebuild the file")
            if picklegen.rebuild(picklegen.decode(*picklegen.encode(pkl_recipe))) != pkl:
                raise SystemExit(f"{path.name}: the pickle recipe does not rebuild data.pkl")
            rows["runs"] += sum(frame_bytes(run, seen["runs"]) for _, run in built.runs)
            rows["pkl"] += frame_bytes(pkl, seen["pkl"])
            shape, varying = zipregen.encode(zip_recipe)
            template, values = picklegen.encode(pkl_recipe)
            rows["zip"] += frame_bytes(shape, seen["zip"]) + frame_bytes(varying, seen["zip"])
            rows["four"] += sum(frame_bytes(p, seen["four"]) for p in (shape, varying, template, values))
            rows["two"] += frame_bytes(shape + template, seen["two"]) + frame_bytes(varying + values, seen["two"])
            no_crc = zip_recipe.prefix + b"".join(m.inline or b"" for m in zip_recipe.members)
            rows["two_no_crc"] += frame_bytes(shape + template, seen["two_no_crc"]) + frame_bytes(
                no_crc + values, seen["two_no_crc"]
            )
            rows["raw"] += frame_bytes(shape + template, seen["raw"]) + len(no_crc + values)
            parts.append(f"| {path.name} | {len(pkl):,} | {len(template):,} + {len(values):,} | "
                         f"{len(shape):,} + {len(varying):,} |")  # fmt: skip
    print(f"## geatnet series ({len(files)} epochs): recipe sizes (raw bytes)\n")
    print("| epoch | data.pkl | pickle template + varying | zip shape + varying |\n|---|---:|---:|---:|")
    print("\n".join(parts))
    base = rows["today"] - rows["runs"] - rows["pkl"]  # the storages (and any segment not counted here)
    projections = {
        "today (storages as tensors, opaque runs and data.pkl)": rows["today"],
        "zip recipe, data.pkl opaque": base + rows["pkl"] + rows["zip"],
        "zip + pickle recipes, four parts per file": base + rows["four"],
        "zip + pickle recipes, two parts per file": base + rows["two"],
        "two parts, zip CRC-32s computed on read (what-if)": base + rows["two_no_crc"],
        "the same, varying parts at raw size with no frame (floor)": base + rows["raw"],
    }
    reference_bytes = rows["safetensors"]
    print(f"\n## stored bytes against the safetensors conversion ({reference_bytes:,} bytes stored)\n")
    print("| stored as | stored bytes | over the reference | ratio |\n|---|---:|---:|---:|")
    for name, size in projections.items():
        print(f"| {name} | {size:,} | {size - reference_bytes:+,} | {size / reference_bytes:.5f} |")
    print(f"\n(opaque runs {rows['runs']:,}, data.pkl {rows['pkl']:,}, zip recipes {rows['zip']:,}; "
          f"ran {time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
