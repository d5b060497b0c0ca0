"""Scale benchmarks of issue 13 ("Done means"), one section per part.

    python3 bench/scale.py lineage --corpus DIR [--descendants 1000] [--layers 1] [--rows 64] [--no-reference]

Prints markdown tables; ratios are within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale_lineage import bench_lineage, print_lineage  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    lineage = parts.add_parser("lineage", help="base choice among a synthetic lineage of the real base")
    lineage.add_argument("--corpus", type=Path, default=Path(os.environ.get("DELTAHUB_CORPUS", "")))
    lineage.add_argument("--descendants", type=int, default=1000)
    lineage.add_argument("--layers", type=int, default=1)
    lineage.add_argument("--rows", type=int, default=64)
    lineage.add_argument("--seed", type=int, default=13)
    lineage.add_argument("--no-reference", action="store_true", help="skip the declared-parents reference run")
    args = parser.parse_args()
    if args.part == "lineage":
        with tempfile.TemporaryDirectory(prefix="deltahub-scale-") as tmp:
            r = bench_lineage(args.corpus, Path(tmp), descendants=args.descendants, layers=args.layers,
                              rows=args.rows, seed=args.seed, reference=not args.no_reference)  # fmt: skip
        print_lineage(r, descendants=args.descendants, layers=args.layers, rows=args.rows)


if __name__ == "__main__":
    main()
