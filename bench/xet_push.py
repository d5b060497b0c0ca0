"""Push MB/s through the Xet protocol against the LFS path, with the real client, same file, same run.

    python3 bench/xet_push.py --corpus DIR [--runs 5] [--model minilm-bf16/sre]

Each push goes to a fresh server (embedded mode, its own data directory) from a fresh client process
(its own HF_HOME, so no Xet cache): every run moves the whole file. Xet and LFS runs alternate so both
see the same machine load. Prints medians: upload seconds (until upload_file returns: the file is
staged, the commit made) and upload + ingest until the file is stored, the bytes the server received,
the server's peak RSS, and the server's own time in the Xet CAS routes (xorb and shard uploads of both
pushes, from its /metrics), which the machine's load disturbs less than the client's wall clock. Also
prints what the catalog keeps for the Xet upload.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.transfer import AUTH, TOKEN, Server, sha256_file  # noqa: E402

MB = 1e6

# Runs in a fresh interpreter so the client's import-time settings (HF_HUB_DISABLE_XET) apply.
# A first upload of other bytes warms the client (hf_xet starts its runtime on first use): the timed
# one is the steady state. Both runs are printed: cold (first push of a process) and warm.
CLIENT = """
import os, sys, time
from huggingface_hub import HfApi
url, token, path, repo = sys.argv[1:5]
api = HfApi(endpoint=url, token=token)
api.create_repo("bench/warm", exist_ok=True)
start = time.perf_counter()
api.upload_file(path_or_fileobj=os.urandom(4 << 20), path_in_repo="warm.bin", repo_id="bench/warm")
print(time.perf_counter() - start)
api.create_repo(repo, exist_ok=True)
print(time.time())
start = time.perf_counter()
api.upload_file(path_or_fileobj=path, path_in_repo="model.safetensors", repo_id=repo)
print(time.perf_counter() - start)
"""


def push(mode: str, path: Path, sha: str, work: Path) -> dict[str, float]:
    (work / "static").mkdir(parents=True, exist_ok=True)
    server = Server(work / "server", work / "static")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_XET", "HF_TOKEN", "HF_ENDPOINT")}
        env |= {"HF_HOME": str(work / "hf"), "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        if mode == "lfs":
            env["HF_HUB_DISABLE_XET"] = "1"
        out = subprocess.run([sys.executable, "-c", CLIENT, server.url, TOKEN, str(path), "bench/push"],
                             env=env, check=True, capture_output=True, text=True)
        warm_s, started, upload_s = (float(x) for x in out.stdout.strip().splitlines()[-3:])
        while httpx.get(f"{server.url}/api/v1/files/{sha}", headers=AUTH, timeout=30).json()["state"] == "staged":
            time.sleep(0.05)
        stored_s = time.time() - started
        transfers = httpx.get(f"{server.url}/api/v1/stats", timeout=30).json()["transfers"]
        cas = cas_seconds(httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=30).text)
        received = transfers["xet_xorb_bytes"] + transfers["lfs_put_bytes"] - (4 << 20)
        return {"upload_s": upload_s, "stored_s": stored_s, "received": received, "cold_s": warm_s,
                "rss_mb": server.peak_rss_mb(), **cas}
    finally:
        server.stop()


def cas_seconds(metrics: str) -> dict[str, float]:
    """Seconds the server spent in the xorb and the shard upload routes (request duration sums)."""
    out = {"xorb_s": 0.0, "shard_s": 0.0}
    for line in metrics.splitlines():
        if not line.startswith("deltahub_http_request_duration_seconds_sum{"):
            continue
        labels, value = line.rsplit(" ", 1)
        if "/v1/xorbs/" in labels:
            out["xorb_s"] += float(value)
        elif labels.rstrip('"}').endswith("/v1/shards"):
            out["shard_s"] += float(value)
    return out


def catalog_cost(path: Path, work: Path) -> dict[str, int]:
    """Rows and bytes the Xet tables hold after one push of `path` (a server left running to look)."""
    import sqlite3

    push("xet", path, sha256_file(path), work)
    db = sqlite3.connect(work / "server" / "catalog.sqlite3")
    rows = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("xet_xorbs", "xet_xorb_spans", "xet_dedup_chunks", "xet_files")}
    rows["chunk_table_bytes"] = db.execute("SELECT COALESCE(SUM(LENGTH(chunk_table)), 0) FROM xet_xorbs").fetchone()[0]
    rows["chunks"] = db.execute("SELECT COALESCE(SUM(num_chunks), 0) FROM xet_xorbs").fetchone()[0]
    rows["raw_xorbs_left"] = db.execute("SELECT COUNT(*) FROM xet_xorbs WHERE raw_key IS NOT NULL").fetchone()[0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", default="minilm-bf16/sre")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = args.corpus / args.model / "model.safetensors"
    size, sha = path.stat().st_size, sha256_file(path)
    results: dict[str, list[dict[str, float]]] = {"xet": [], "lfs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for mode in ("xet", "lfs"):
                results[mode].append(push(mode, path, sha, Path(tmp) / f"{mode}{run}"))
        cost = catalog_cost(path, Path(tmp) / "cost")
    print(f"\n{args.model}/model.safetensors, {size / MB:.1f} MB, median of {args.runs}\n")
    print("| path | upload MB/s | upload + ingest MB/s | bytes received | server peak RSS | first 4 MiB push (cold) |")
    print("|---|---|---|---|---|---|")
    for mode, runs in results.items():
        upload = statistics.median(r["upload_s"] for r in runs)
        stored = statistics.median(r["stored_s"] for r in runs)
        received = statistics.median(r["received"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        cold = statistics.median(r["cold_s"] for r in runs)
        print(f"| {mode} | {size / upload / MB:.0f} | {size / stored / MB:.0f} | {received / MB:.1f} MB"
              f" | {rss:.0f} MB | {cold:.2f} s |")
    xorb_s = statistics.median(r["xorb_s"] for r in results["xet"])
    shard_s = statistics.median(r["shard_s"] for r in results["xet"])
    print(f"\nXet server time (both pushes, median): xorb uploads {xorb_s:.3f} s, shard uploads {shard_s:.3f} s")
    print(f"Xet catalog after one push: {json.dumps(cost)}")
    print(f"chunk table: {cost['chunk_table_bytes'] / size * 100:.3f}% of the file")


if __name__ == "__main__":
    main()
