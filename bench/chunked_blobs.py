"""Content-defined chunking of opaque files: what each chunk size stores, and what it costs.

    python3 bench/chunked_blobs.py [--rows 200000] [--runs 3]

Data: a JSONL dataset shard (synthetic rows of words, floats and hex ids, seeded) and its next version
with three edits (a run of 1% of the rows relabelled, 1% deleted further on, 2.5% appended), and a
log that only grows. For each chunk size (min_chunk; the gear hash adds ~64 KiB on average) it prints
the first version's stored bytes (every chunk plain-coded alone, as ingest does) against coding the
whole file at once, the bytes the second version adds, the segment count, and the chunker's speed
(median of --runs) against zstd level 3 on the same bytes, the reference in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.core.codecs.plain import PlainCodec
from storage.core.dtypes import DTYPES
from storage.core.formats import blob
from storage.core.xet.chunking import Chunker

U8 = DTYPES["U8"]
WORDS = ["model", "tensor", "delta", "frame", "hub", "token", "layer", "shard", "base", "merge", "lossless"]


def records(rng: random.Random, n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"id": start + i, "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))),
         "score": rng.random(), "label": rng.randint(0, 9), "hash": f"{rng.getrandbits(128):032x}"}
        for i in range(n)
    ]


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def versions(n: int) -> tuple[bytes, bytes]:
    rng = random.Random(11)
    rows = records(rng, n)
    edited = [dict(r) for r in rows]
    for r in edited[n // 5 : n // 5 + n // 100]:
        r["label"] = -1
    del edited[3 * n // 5 : 3 * n // 5 + n // 100]
    return jsonl(rows), jsonl(edited + records(rng, n // 40, start=n))


def chunks(data: bytes, low: int, high: int) -> list[bytes]:
    chunker = Chunker(min_chunk=low, max_chunk=high)
    return [*chunker.feed(data), *chunker.finish()]


def stored(pieces: list[bytes], codec: PlainCodec) -> dict[str, int]:
    return {piece: len(codec.encode(piece, U8)) for piece in set(pieces)}  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    first, second = versions(args.rows)
    codec = PlainCodec(skip=0)
    whole = len(codec.encode(first, U8))
    zstd_times = []
    for _ in range(args.runs):
        began = time.perf_counter()
        zstandard.ZstdCompressor(level=3).compress(first)
        zstd_times.append(time.perf_counter() - began)
    zstd_speed = len(first) / statistics.median(zstd_times) / 1e6
    print(f"first version {len(first) / 1e6:.1f} MB, second {len(second) / 1e6:.1f} MB; "
          f"whole first version plain-coded: {whole / 1e6:.2f} MB; zstd -3 {zstd_speed:.0f} MB/s\n")
    print("| min_chunk | segments | first stored / whole-file coding | second adds / first stored | chunker MB/s |")
    print("|---|---|---|---|---|")
    for low in (32 << 10, 64 << 10, blob.MIN_CHUNK, 448 << 10, 960 << 10):
        high = max(blob.MAX_CHUNK, 4 * low)
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            a = chunks(first, low, high)
            times.append(time.perf_counter() - began)
        b = chunks(second, low, high)
        held = stored(a, codec)
        first_bytes = sum(held.values())
        added = sum(size for piece, size in stored(b, codec).items() if piece not in held)
        mark = " (default)" if low == blob.MIN_CHUNK else ""
        print(f"| {low >> 10} KiB{mark} | {len(a)} | {first_bytes / whole:.3f} | {added / first_bytes:.3f} | "
              f"{len(first) / statistics.median(times) / 1e6:.0f} |")


if __name__ == "__main__":
    main()
