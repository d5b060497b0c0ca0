"""Regenerate the golden xorbs and shards by uploading seeded random data with the real `hf_xet` client
to a local recorder (no network). Run from the worktree root:

    python3 -m tests.storage.core.xet.golden.make_golden

The data is chosen to stay small once compressed (a few KB per object) while still giving several
chunks, all three compression schemes, a file that repeats itself, files sharing chunks and an empty
file. `manifest.json` records what the client reported for each file; the tests rebuild every file
from the golden objects and check it against that. Rerunning gives the same bytes except for `multi`:
the client chunks several files in parallel, so the order they land in their shared xorb varies.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
from pathlib import Path

import hf_xet

from tests.xet_recorder import XetRecorder

HERE = Path(__file__).parent


def _text(rng: random.Random, size: int) -> bytes:
    # Phrases drawn from a small pool: LZ4 turns each repeat into a few bytes, so a file of several
    # chunks serializes to a few KB; the random junctions still give the gear hash varied windows.
    phrases = [rng.randbytes(rng.randint(40, 300)) for _ in range(24)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(phrases)
    return bytes(out[:size])


def _floats(count: int) -> bytes:
    # A slow, coarsely quantised wave: the exponent bytes repeat and the low mantissa bytes are zero,
    # the case the client compresses with byte grouping.
    return struct.pack(f"<{count}f", *(round(math.sin(i / 300) * 64) / 64 for i in range(count)))


def _bf16_weights(rng: random.Random, count: int) -> bytes:
    # Gaussian weights rounded to bfloat16 and stored as float32: the two low bytes of each are zero,
    # the case the client compresses with byte grouping (scheme 2).
    values = struct.pack(f"<{count}f", *(rng.gauss(0, 0.02) for _ in range(count)))
    return b"".join(b"\0\0" + values[i + 2 : i + 4] for i in range(0, len(values), 4))


def cases() -> dict[str, list[bytes]]:
    rng = random.Random(20261202)
    shared = _text(rng, 40_000)
    return {
        "small": [rng.randbytes(3_000)],
        "text": [_text(rng, 400_000)],
        "floats": [_floats(40_000)],
        "weights": [_bf16_weights(rng, 12_000)],
        "repeat": [(lambda part: part + rng.randbytes(2_000) + part)(_text(rng, 150_000))],
        "multi": [shared + _text(rng, 30_000), b"", _text(rng, 20_000) + shared],
    }


def main() -> None:
    manifest: dict[str, object] = {"client": f"hf_xet {getattr(hf_xet, '__version__', '1.8.0')}", "cases": {}}
    for name, files in cases().items():
        with XetRecorder() as cas:
            reports = hf_xet.upload_bytes(files, cas.url, cas.token_info(), None, None, "model")
            xorbs, shards = dict(cas.xorbs), list(cas.shards)
        for xorb_hex, body in xorbs.items():
            (HERE / f"{name}.{xorb_hex[:16]}.xorb").write_bytes(body)
        for index, body in enumerate(shards):
            (HERE / f"{name}.{index}.shard").write_bytes(body)
        manifest["cases"][name] = {  # type: ignore[index]
            "files": [
                {"hash": report.hash, "size": report.file_size, "sha256": hashlib.sha256(data).hexdigest()}
                for report, data in zip(reports, files, strict=True)
            ],
            "xorbs": sorted(xorbs),
            "shards": len(shards),
        }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
