"""Push and pull over HTTP with the real huggingface_hub client, against the same server's static file.

    python3 bench/transfer.py --corpus DIR [--runs 5] [--big-gb 2.1]

One server process (embedded mode: the API with its in-process ingest worker) serves deltahub's routes
and, under /static, the very file being pushed, so a pull is compared with sending the raw file from
the same process in the same run. Prints a markdown table: push (upload + ingest until stored) and pull
MB/s, time to first byte, and the server's peak RSS while pushing and pulling a file of more than 2 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import httpx  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402

from bench.storage import build_big_file  # noqa: E402

MB = 1e6
TOKEN = "dh_bench_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, work: Path, static: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.transfer_server", "--data-dir", str(work), "--static-dir", str(static),
             "--port", str(self.port), "--token", TOKEN], cwd=ROOT, env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def push(server: Server, path: Path, repo: str) -> tuple[float, float, str]:
    """Upload seconds, then seconds until ingest has stored the file."""
    api = HfApi(endpoint=server.url, token=TOKEN)
    api.create_repo(repo, exist_ok=True)
    start = time.perf_counter()
    api.upload_file(path_or_fileobj=str(path), path_in_repo="model.safetensors", repo_id=repo)
    uploaded = time.perf_counter()
    sha = sha256_file(path)
    while True:
        answer = httpx.get(f"{server.url}/api/v1/files/{sha}", headers=AUTH, timeout=30)
        state = answer.raise_for_status().json()["state"]
        if state != "staged":
            break
        time.sleep(0.05)
    if state != "stored":
        raise RuntimeError(f"ingest ended {state}")
    return uploaded - start, time.perf_counter() - uploaded, sha


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def pull(url: str) -> tuple[float, float, str]:
    """Seconds to first byte, seconds to last byte, sha256 of the body."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    first = None
    with httpx.stream("GET", url, timeout=300) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1 << 20):
            if first is None:
                first = time.perf_counter() - start
            digest.update(chunk)
    return first or 0.0, time.perf_counter() - start, digest.hexdigest()


def compare_pulls(server: Server, repo: str, sha: str, size: int, runs: int) -> dict[str, float]:
    ours = f"{server.url}/{repo}/resolve/main/model.safetensors"
    static = f"{server.url}/static/model.safetensors"
    results: dict[str, list[tuple[float, float]]] = {"deltahub": [], "static": []}
    for _ in range(runs):  # interleaved, so both see the same machine load
        for name, url in (("deltahub", ours), ("static", static)):
            ttfb, total, digest = pull(url)
            assert digest == sha, f"{name} pull is not byte-exact"
            results[name].append((ttfb, total))
    return {
        f"{name}_{what}": statistics.median(x[i] for x in values)
        for name, values in results.items() for i, what in ((0, "ttfb"), (1, "seconds"))
    } | {"size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("DELTAHUB_CORPUS", "")))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-gb", type=float, default=2.1, help="0 skips the >2 GB memory run")
    args = parser.parse_args()
    tuned = args.corpus / "minilm-bf16/sre/model.safetensors"
    base = args.corpus / "minilm-bf16/base/model.safetensors"
    if not tuned.exists():
        sys.exit("--corpus DIR (or DELTAHUB_CORPUS) must name a corpus built by build_dev_corpus.py")
    with tempfile.TemporaryDirectory(prefix="deltahub-http-") as tmp:
        work, static = Path(tmp) / "data", Path(tmp) / "static"
        static.mkdir()
        shutil.copy(tuned, static / "model.safetensors")
        server = Server(work, static)
        try:
            push(server, base, "bench/base")
            upload_s, ingest_s, sha = push(server, tuned, "bench/tuned")
            size = tuned.stat().st_size
            p = compare_pulls(server, "bench/tuned", sha, size, args.runs)
            rss_small = server.peak_rss_mb()
        finally:
            server.stop()
        print(f"## HTTP: MiniLM BF16 fine-tune ({size / MB:.1f} MB) with huggingface_hub, median of {args.runs}\n")
        print("| measure | deltahub | static file, same server | ratio | target |\n|---|---|---|---|---|")
        print(f"| push: upload + ingest until stored | {size / (upload_s + ingest_s) / MB:.0f} MB/s "
              f"({upload_s:.2f} s + {ingest_s:.2f} s) | | | |")
        ours, theirs = size / p["deltahub_seconds"] / MB, size / p["static_seconds"] / MB
        print(f"| pull | {ours:.0f} MB/s | {theirs:.0f} MB/s | {ours / theirs:.2f} | ≥ 0.5 |")
        print(f"| time to first byte | {p['deltahub_ttfb'] * 1e3:.1f} ms | {p['static_ttfb'] * 1e3:.1f} ms | "
              f"{p['deltahub_ttfb'] / p['static_ttfb']:.2f} | ≤ 2 |")
        print(f"| server peak RSS | {rss_small:.0f} MB | | | |")

        if args.big_gb > 0:
            big = Path(tmp) / "big.safetensors"
            size = build_big_file(args.corpus, big, int(args.big_gb * 1e9))
            server = Server(Path(tmp) / "big-data", static)
            try:
                upload_s, ingest_s, sha = push(server, big, "bench/big")
                big.unlink()
                _, pull_s, digest = pull(f"{server.url}/bench/big/resolve/main/model.safetensors")
                rss = server.peak_rss_mb()
            finally:
                server.stop()
            print(f"\n## A {size / 1e9:.2f} GB file: push and pull through the API (embedded worker in-process)\n")
            print("| step | seconds | MB/s |\n|---|---|---|")
            print(f"| upload | {upload_s:.0f} | {size / upload_s / MB:.0f} |")
            print(f"| ingest | {ingest_s:.0f} | {size / ingest_s / MB:.0f} |")
            print(f"| pull (byte-exact: {digest == sha}) | {pull_s:.0f} | {size / pull_s / MB:.0f} |")
            print(f"| server peak RSS (API + worker) | {rss:.0f} MB (target < 1024) | |")


if __name__ == "__main__":
    main()
