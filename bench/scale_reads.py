"""Reads at scale against static file servers serving the same bytes: python3 -m http.server and nginx.

    python3 bench/scale_reads.py [--runs 5] [--big-gb 1.05] [--data DIR] [--code CHECKOUT]

Builds four safetensors files of BF16 normals (10 tensors of 8 MiB; 2,370 tensors; 100,000 tensors;
one file of ≥ 1 GB), ingests them into a hub under DIR (kept with --data, so a second run, or a run of
another checkout's code, reads the very same stored data), then starts deltahub's server (embedded mode,
SQLite, bench/transfer_server.py), `python3 -m http.server` and nginx (Debian's, on 127.0.0.1 with a
temporary config) on the same files and times curl against each, interleaved, median of --runs:

- cold: on a freshly started deltahub server each run (nothing planned or decoded yet), full read MB/s
  of the 10-tensor file and time to the first body byte of the 2,370-tensor file;
- warm (one server, each file read once before timing): full read MB/s of the 10-tensor file, and time
  to the first body byte (http.client) of a whole-file GET at 10 / 2,370 / 100,000 tensors;
- a 100-byte range at a random offset of the 100,000-tensor file, and a 1 MiB range at a random offset
  of the ≥ 1 GB file (a new offset each run; cold: nothing of that range decoded before);
- hot (a server with the hot-file cache on, which the rows above run without): the ≥ 1 GB file read
  whole three times first, then full reads of it and 1 MiB ranges at random offsets, served from its
  verified copy (with main's code, which has no such cache: rebuilt).

--code CHECKOUT runs another checkout's server (e.g. /work/main) on the same data: the before numbers.
Every body is checked byte-exact once per server before timing.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1e6
TOKEN = "dh_bench_token"
# http.server answers a Range with the whole file (200): it has no range numbers.
RANGES = {"deltahub", "nginx"}


def bf16_normals(rng: object, count: int) -> bytes:
    import numpy as np

    assert isinstance(rng, np.random.Generator)
    values = rng.standard_normal(count, dtype=np.float32) * np.float32(0.02)
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def write_safetensors(path: Path, tensors: list[tuple[str, int]], seed: int) -> None:
    """`tensors`: (name, element count), BF16, written tensor by tensor (memory stays one tensor)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    header, offset = {}, 0
    for name, count in tensors:
        header[name] = {"dtype": "BF16", "shape": [count], "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for _, count in tensors:
            f.write(bf16_normals(rng, count))


def build_files(static: Path, big_bytes: int) -> None:
    write_safetensors(static / "t10.safetensors", [(f"w{i}", 4 << 20) for i in range(10)], 1)
    write_safetensors(static / "t2370.safetensors", [(f"layer.{i}.w", 2048) for i in range(2370)], 2)
    write_safetensors(static / "t100k.safetensors", [(f"p.{i}", 32) for i in range(100_000)], 3)
    per = 32 << 20  # 64 MiB tensors
    write_safetensors(static / "big.safetensors", [(f"big.{i}", per) for i in range(big_bytes // (2 * per) + 1)], 4)


def ingest(code: Path, data: Path, static: Path) -> None:
    """Upload, commit and ingest every file in this process, with `code`'s hub."""
    script = f"""
import sys
sys.path.insert(0, {str(code)!r})
from pathlib import Path
from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import jobs
from storage.settings import load_settings
from workers.jobs.ingest import run_ingest
hub = Hub.from_settings(load_settings(data_dir=Path({str(data)!r})), migrate=True)
def chunks(path):
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            yield block
for path in sorted(Path({str(static)!r}).glob("*.safetensors")):
    repo = "bench/" + path.stem
    hub.create_repo(repo)
    info = hub.upload(chunks(path))
    hub.commit(repo, "main", message="v1", additions=[FileAddition("model.safetensors", info.sha256)])
with hub.session() as s:
    pending = jobs.unfinished_jobs(s)
for job in pending:
    run_ingest(hub, job)
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=code, env={**os.environ, "PYTHONPATH": str(code)})


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server {url} exited with {process.returncode}")
        if subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"server {url} did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """deltahub (restartable), http.server and nginx, each serving `static`'s files."""

    def __init__(self, code: Path, data: Path, static: Path, tmp: Path) -> None:
        self.code, self.data, self.static, self.tmp = code, data, static, tmp
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        port = free_port()
        self.processes["http.server"] = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(static)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.urls["http.server"] = f"http://127.0.0.1:{port}/{{name}}.safetensors"
        wait_up(f"http://127.0.0.1:{port}/", self.processes["http.server"])
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if Path(nginx).exists():
            port = free_port()
            prefix = tmp / "nginx"
            prefix.mkdir()
            (prefix / "nginx.conf").write_text(
                f"daemon off; worker_processes 1; user root; pid {prefix}/nginx.pid; error_log {prefix}/error.log;\n"
                "events { worker_connections 64; }\n"
                f"http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {prefix}/b; "
                f"proxy_temp_path {prefix}/p; fastcgi_temp_path {prefix}/f; uwsgi_temp_path {prefix}/u; "
                f"scgi_temp_path {prefix}/s; server {{ listen 127.0.0.1:{port}; root {static}; }} }}\n"
            )
            self.processes["nginx"] = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
            self.urls["nginx"] = f"http://127.0.0.1:{port}/{{name}}.safetensors"
            wait_up(f"http://127.0.0.1:{port}/t10.safetensors", self.processes["nginx"])
        try:
            self.start_deltahub()
        except BaseException:
            self.stop_all()  # a deltahub that does not start must not leave the static servers running
            raise

    def start_deltahub(self, *, hot: bool = False) -> None:
        """Without `hot`, the hot-file cache is off: every read is rebuilt from frames (the cold and warm
        rows); with it, the cache starts empty in a fresh directory."""
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(self.code), "DELTAHUB_INGEST_WORKERS": "1",
               "DELTAHUB_HOT_CACHE_BYTES": str(4 << 30 if hot else 0)}
        if hot:
            env["DELTAHUB_HOT_CACHE_DIR"] = tempfile.mkdtemp(prefix="hot-", dir=self.tmp)
        self.processes["deltahub"] = subprocess.Popen(
            [sys.executable, "-m", "bench.transfer_server", "--data-dir", str(self.data),
             "--static-dir", str(self.static), "--port", str(port), "--token", TOKEN], cwd=self.code, env=env,
        )
        self.urls["deltahub"] = f"http://127.0.0.1:{port}/bench/{{name}}/resolve/main/model.safetensors"
        wait_up(f"http://127.0.0.1:{port}/api/v1/health", self.processes["deltahub"])

    def restart_deltahub(self, *, hot: bool = False) -> None:
        self.stop("deltahub")
        self.start_deltahub(hot=hot)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def curl(url: str, byte_range: tuple[int, int] | None = None) -> tuple[float, float, int]:
    """(seconds to first byte, seconds in all, bytes received)."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download} %{http_code}"]
    if byte_range is not None:
        args += ["-r", f"{byte_range[0]}-{byte_range[1] - 1}"]
    fields = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout.split()
    if fields[3] not in ("200", "206"):
        raise RuntimeError(f"{url}: HTTP {fields[3]}")
    return float(fields[0]), float(fields[1]), int(fields[2])


def first_byte(url: str) -> float:
    """Seconds from sending a whole-file GET to the first byte of its body (not of its headers: a
    streamed response sends headers before it has any body), then the rest is read and dropped."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    try:
        started = time.perf_counter()
        connection.request("GET", parts.path)
        response = connection.getresponse()
        if response.status != 200 or not response.read(1):
            raise RuntimeError(f"{url}: HTTP {response.status}")
        elapsed = time.perf_counter() - started
        while response.read(1 << 20):
            pass
        return elapsed
    finally:
        connection.close()


def check_exact(url: str, path: Path, byte_range: tuple[int, int] | None = None) -> None:
    args = ["curl", "-sf", url] + (["-r", f"{byte_range[0]}-{byte_range[1] - 1}"] if byte_range else [])
    body = subprocess.run(args, check=True, capture_output=True).stdout
    with path.open("rb") as f:
        if byte_range:
            f.seek(byte_range[0])
            expected = f.read(byte_range[1] - byte_range[0])
        else:
            expected = f.read()
    if hashlib.sha256(body).digest() != hashlib.sha256(expected).digest():
        raise RuntimeError(f"{url} {byte_range}: body differs from the file")


def measure(servers: Servers, static: Path, runs: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    names = list(servers.urls)
    size = {p.stem: p.stat().st_size for p in static.glob("*.safetensors")}
    for name in names:  # byte-exact once, and every file planned once before timing
        for stem in size:
            if stem != "big":
                check_exact(servers.urls[name].format(name=stem), static / f"{stem}.safetensors")
        if name in RANGES:
            check_exact(servers.urls[name].format(name="big"), static / "big.safetensors",
                        (size["big"] - 3, size["big"]))
    samples: dict[str, dict[str, list[float]]] = {n: {} for n in names}

    def add(server: str, what: str, value: float) -> None:
        samples[server].setdefault(what, []).append(value)

    for _ in range(runs):  # cold: a freshly started deltahub server, nothing planned or decoded yet
        servers.restart_deltahub()
        _, total, got = curl(servers.urls["deltahub"].format(name="t10"))
        assert got == size["t10"]
        add("deltahub", "cold MB/s, 10 tensors", size["t10"] / total / MB)
        add("deltahub", "cold TTFB 2,370 tensors", first_byte(servers.urls["deltahub"].format(name="t2370")) * 1e3)
        for name in names:
            if name != "deltahub":
                _, total, _ = curl(servers.urls[name].format(name="t10"))
                add(name, "cold MB/s, 10 tensors", size["t10"] / total / MB)
                add(name, "cold TTFB 2,370 tensors", first_byte(servers.urls[name].format(name="t2370")) * 1e3)
    for stem in ("t10", "t2370", "t100k"):  # warm: each file read once on this server first
        curl(servers.urls["deltahub"].format(name=stem))
    for _ in range(runs):
        for name in names:
            _, total, _ = curl(servers.urls[name].format(name="t10"))
            add(name, "warm MB/s, 10 tensors", size["t10"] / total / MB)
            add(name, "TTFB 10 tensors", first_byte(servers.urls[name].format(name="t10")) * 1e3)
        for stem, label in (("t2370", "TTFB 2,370 tensors"), ("t100k", "TTFB 100,000 tensors")):
            for name in names:
                add(name, label, first_byte(servers.urls[name].format(name=stem)) * 1e3)
        for stem, length, label in (("t100k", 100, "100 B range, 100,000 tensors"),
                                    ("big", 1 << 20, f"1 MiB range, {size['big'] / 1e9:.2f} GB")):  # fmt: skip
            start = rng.randrange(0, size[stem] - length)  # a new offset each run: its frames not decoded yet
            for name in RANGES & set(names):
                _, total, got = curl(servers.urls[name].format(name=stem), (start, start + length))
                assert got == length
                add(name, label, total * 1e3)
    # hot: a server with the hot-file cache on, the big file read whole 3 times first (its 2nd whole read
    # leaves the verified copy); then whole reads and 1 MiB ranges of it (main's code: still rebuilt).
    servers.restart_deltahub(hot=True)
    for _ in range(3):
        curl(servers.urls["deltahub"].format(name="big"))
    check_exact(servers.urls["deltahub"].format(name="big"), static / "big.safetensors", (12345, 12345 + (1 << 20)))
    big = f"{size['big'] / 1e9:.2f} GB"
    for _ in range(runs):
        for name in RANGES & set(names):
            _, total, got = curl(servers.urls[name].format(name="big"))
            assert got == size["big"]
            add(name, f"hot MB/s, {big}", size["big"] / total / MB)
        start = rng.randrange(0, size["big"] - (1 << 20))
        for name in RANGES & set(names):
            _, total, got = curl(servers.urls[name].format(name="big"), (start, start + (1 << 20)))
            assert got == 1 << 20
            add(name, f"1 MiB range, hot {big}", total * 1e3)
    return {n: {what: statistics.median(v) for what, v in per.items()} for n, per in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-gb", type=float, default=1.05)
    parser.add_argument("--data", type=Path, help="keep the files and the hub here (reused when present)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose server is measured")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deltahub-reads-") as tmp:
        work = args.data or Path(tmp) / "work"
        static, data = work / "static", work / "hub"
        if not (work / "ingested").exists():
            static.mkdir(parents=True, exist_ok=True)
            build_files(static, int(args.big_gb * 1e9))
            started = time.perf_counter()
            ingest(args.code.resolve(), data, static)
            (work / "ingested").write_text(f"{time.perf_counter() - started:.1f} s\n")
        servers = Servers(args.code.resolve(), data, static, Path(tmp))
        try:
            results = measure(servers, static, args.runs, args.seed)
        finally:
            servers.stop_all()
    names = [n for n in ("deltahub", "http.server", "nginx") if n in results]
    commit = subprocess.run(["git", "-C", str(args.code), "log", "-1", "--format=%h"], capture_output=True,
                            text=True, check=False).stdout.strip()
    print(f"## Reads: deltahub ({args.code.name} @ {commit}) against static servers, curl, median of {args.runs}\n")
    print("| measure | " + " | ".join(names) + " | deltahub / " + names[-1] + " |")
    print("|---|" + "---|" * (len(names) + 1))
    for what in results["deltahub"]:
        unit = "" if "MB/s" in what else " ms"
        cells = [f"{results[n][what]:.1f}{unit}" if what in results[n] else "no Range support" for n in names]
        ratio = results["deltahub"][what] / results[names[-1]][what]
        print(f"| {what} | " + " | ".join(cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
