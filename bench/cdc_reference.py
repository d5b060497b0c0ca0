"""A chunk-dedup reference, for comparison in the same run: what Xet-style storage would hold.

The Hugging Face Hub's Xet storage cuts every file into content-defined chunks (~64 KiB, the gear hash
of storage/core/xet/chunking.py), stores each distinct chunk once and compresses it alone. This
reproduces that accounting on a corpus, generously: each distinct chunk is zstd-3 coded (Xet itself uses
LZ4, with or without byte grouping, which stores more). It knows nothing of tensors, dtypes or bases.

    python3 -m bench.cdc_reference --corpus DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.zipllm import zstd3
from storage.core.xet.chunking import Chunker

READ_BYTES = 8 << 20


@dataclass
class ChunkAccount:
    logical_bytes: int = 0
    chunks: int = 0
    unique_chunks: int = 0
    stored_bytes: int = 0


def cdc_reference(paths: Iterable[Path]) -> ChunkAccount:
    account = ChunkAccount()
    seen: set[bytes] = set()
    for path in paths:
        chunker = Chunker()
        with path.open("rb") as f:
            pieces = iter(lambda: f.read(READ_BYTES), b"")
            for chunk in [c for piece in pieces for c in chunker.feed(piece)] + chunker.finish():
                account.logical_bytes += len(chunk)
                account.chunks += 1
                digest = hashlib.sha256(chunk).digest()
                if digest in seen:
                    continue
                seen.add(digest)
                account.unique_chunks += 1
                account.stored_bytes += zstd3(chunk)
    return account


def corpus_files(corpus: Path) -> list[Path]:
    models = json.loads((corpus / "corpus.json").read_text())["models"]
    return [corpus / m["repo"] / f for m in models for f in m["files"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("DELTAHUB_CORPUS", "")))
    args = parser.parse_args()
    account = cdc_reference(corpus_files(args.corpus))
    print(f"| logical | {account.logical_bytes / 1e6:.1f} MB |")
    print(f"| chunks (distinct) | {account.chunks} ({account.unique_chunks}) |")
    print(f"| chunk-dedup reference stores | {account.stored_bytes / 1e6:.1f} MB "
          f"({account.stored_bytes / account.logical_bytes:.3f}) |")


if __name__ == "__main__":
    main()
