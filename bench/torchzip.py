"""PyTorch zip checkpoints: what parsing their storages as tensors saves, and what the parse costs.

    python3 bench/torchzip.py --corpus DIR [--runs 5]

Prints markdown tables, every ratio computed in this run on the same files:
1. `pytorch_model.bin` (torch.save of the dev corpus MiniLM's state dict, what transformers'
   save_pretrained(safe_serialization=False) wrote) pushed beside its `model.safetensors`: new bytes stored.
2. The dev corpus's geatnet training series (six `.pth` epochs) stored as parsed tensors, as member spans
   (how every torchzip file was cut before this parse), and converted to safetensors (the reference the
   issue sets: the series must store at no more than that).
3. Reading a 100,000-tensor data.pkl (the `max_header_tensors` bound) against parsing a safetensors
   header of as many tensors: median time and peak memory growth.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage.app.hub import Hub  # noqa: E402
from storage.core.formats import torchzip  # noqa: E402
from storage.core.formats.base import FileLayout, ReadRange  # noqa: E402
from storage.objectstore.local import LocalObjectStore  # noqa: E402
from tests.hubs import ingest_all, ingest_with_layout, make_hub, push  # noqa: E402
from workers.jobs.ingest import run_ingest  # noqa: E402


def new_hub(directory: Path) -> Hub:
    directory.mkdir(parents=True, exist_ok=True)
    return make_hub(directory, f"sqlite:///{directory / 'catalog.sqlite3'}", LocalObjectStore(directory / "objects"))


def stored(hub: Hub, job_ids: list[int]) -> int:
    return sum(r.encoded_bytes for j in job_ids if (r := run_ingest(hub, j)) is not None)


def member_spans(read: ReadRange, size: int) -> FileLayout:
    return torchzip.member_spans(read, size, max_header_bytes=100_000_000)


def bin_beside_twin(corpus: Path, work: Path) -> None:
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(corpus / "minilm-fp32/base")
    model.save_pretrained(work / "minilm")
    torch.save(model.state_dict(), work / "pytorch_model.bin")
    twin, data = (work / "minilm/model.safetensors").read_bytes(), (work / "pytorch_model.bin").read_bytes()
    hub = new_hub(work / "hub-bin")
    ingest_all(hub, push(hub, "org/minilm", {"model.safetensors": twin}))
    added = stored(hub, push(hub, "org/minilm", {"pytorch_model.bin": data}))
    spans_hub = new_hub(work / "hub-bin-spans")
    ingest_all(spans_hub, push(spans_hub, "org/minilm", {"model.safetensors": twin}))
    jobs = push(spans_hub, "org/minilm", {"pytorch_model.bin": data})
    spans = sum(ingest_with_layout(spans_hub, j, member_spans) for j in jobs)
    print("\n## pytorch_model.bin beside its model.safetensors twin\n")
    print("| layout | .bin bytes | new bytes stored | of its size |\n|---|---:|---:|---:|")
    print(f"| member spans (before) | {len(data):,} | {spans:,} | {spans / len(data):.4f} |")
    print(f"| storages as tensors | {len(data):,} | {added:,} | {added / len(data):.4f} |")


def geatnet(corpus: Path, work: Path) -> None:
    import torch
    from safetensors.torch import save

    epochs = sorted(corpus.glob("series/geatnet-atomprop/epoch_*/*.pth"))
    data = [p.read_bytes() for p in epochs]
    logical = sum(map(len, data))
    as_tensors, as_spans, as_safetensors = new_hub(work / "g-t"), new_hub(work / "g-s"), new_hub(work / "g-st")
    rows = {"member spans (before)": 0, "storages as tensors": 0, "converted to safetensors": 0}
    converted = 0
    for i, blob in enumerate(data):
        repo = f"geatnet/epoch_{i + 1}"
        rows["storages as tensors"] += stored(as_tensors, push(as_tensors, repo, {"model.pth": blob}))
        rows["member spans (before)"] += sum(
            ingest_with_layout(as_spans, j, member_spans) for j in push(as_spans, repo, {"model.pth": blob})
        )
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        st = save(state)
        converted += len(st)
        jobs = push(as_safetensors, repo, {"model.safetensors": st})
        rows["converted to safetensors"] += stored(as_safetensors, jobs)
    print(f"\n## geatnet training series ({len(data)} epochs)\n")
    print("| stored as | logical bytes | stored bytes | stored/logical |\n|---|---:|---:|---:|")
    for name, size in rows.items():
        total = converted if name.startswith("converted") else logical
        print(f"| {name} | {total:,} | {size:,} | {size / total:.3f} |")


def parse_cost(runs: int, work: Path) -> None:
    """Each measurement in a fresh process, so peak RSS growth (VmHWM) is the parse's own."""
    import torch

    n = 100_000
    buffer = io.BytesIO()
    torch.save({f"layer.{i}.weight": torch.zeros(2) for i in range(n)}, buffer)
    (work / "100k.pkl").write_bytes(zipfile.ZipFile(buffer).read("archive/data.pkl"))
    import numpy as np
    from safetensors.numpy import save as save_numpy

    header = save_numpy({f"layer.{i}.weight": np.zeros(2, np.float32) for i in range(n)})
    (work / "100k.safetensors").write_bytes(header)
    pkl, st = str(work / "100k.pkl"), str(work / "100k.safetensors")
    probes = {
        "data.pkl (torchpickle)": "from storage.core.formats.torchpickle import read_checkpoint as f; "
                                  f"d = open({pkl!r}, 'rb').read(); run = lambda: f(d, max_tensors={n})",
        "safetensors header": "from storage.core.formats.safetensors import parse_header as f; "
                              f"b = open({st!r}, 'rb').read(); k = int.from_bytes(b[:8], 'little'); "
                              f"h = b[8:8 + k]; run = lambda: f(h, max_tensors={n})",
    }  # fmt: skip
    print(f"\n## reading {n:,} tensors' metadata (median of {runs} runs)\n")
    print("| what | bytes | seconds | peak RSS growth MB |\n|---|---:|---:|---:|")
    for name, setup in probes.items():
        seconds, grown = [], []
        for _ in range(runs):
            # VmHWM, not ru_maxrss: a child forked from this (large) process inherits the parent's ru_maxrss.
            code = (f"import re, sys, time; sys.path.insert(0, {str(ROOT)!r}); {setup}; "
                    "hwm = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]); "
                    "r = hwm(); t = time.perf_counter(); run(); print(time.perf_counter() - t, (hwm() - r) / 1e3)")
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
            s, g = map(float, out.split())
            seconds.append(s)
            grown.append(g)
        size = (work / ("100k.pkl" if "pkl" in name else "100k.safetensors")).stat().st_size
        print(f"| {name} | {size:,} | {statistics.median(seconds):.2f} | {statistics.median(grown):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("DELTAHUB_CORPUS", "")))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (args.corpus / "corpus.json").exists():
        parser.error("--corpus (or DELTAHUB_CORPUS) must name the dev corpus directory")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.monotonic()
        bin_beside_twin(args.corpus, work)
        geatnet(args.corpus, work)
        parse_cost(args.runs, work)
        print(f"\n(ran {time.monotonic() - started:.0f} s; sha of this script "
              f"{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]}; "
              f"rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB)")


if __name__ == "__main__":
    main()
