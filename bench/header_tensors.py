"""Upload, commit and ingest of a safetensors file of N one-byte tensors: seconds and peak RSS of each.

`python -m bench.header_tensors --make 1000000 /tmp/m.safetensors` writes the file (in its own process,
so building it does not count), then `python -m bench.header_tensors /tmp/m.safetensors model.safetensors`
measures (issue 12, defect 11: the hostile probe's 1,000,000-tensor header). Peak RSS includes the
file this script holds.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

from storage.app.hub import Hub
from storage.app.views import FileAddition
from storage.catalog import jobs
from storage.settings import load_settings
from workers.jobs.ingest import run_ingest


def model(count: int) -> bytes:
    header = json.dumps({f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(count)})
    return struct.pack("<Q", len(header)) + header.encode() + bytes(count)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(file: Path, path: str) -> None:
    data = file.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        hub = Hub.from_settings(load_settings(data_dir=Path(d)), migrate=True)
        hub.create_repo("a/b")
        before, t = rss_mb(), time.perf_counter()
        info = hub.upload([data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
        print(f"upload: {time.perf_counter() - t:.2f} s, peak RSS {rss_mb():.0f} MB (before {before:.0f} MB)")
        t = time.perf_counter()
        try:
            hub.commit("a/b", "main", message="m", additions=[FileAddition(path, info.sha256)])
            outcome = "accepted"
        except Exception as exc:  # the measurement reports whatever the hub answers
            outcome = f"{type(exc).__name__}: {exc}"
        print(f"commit at {path}: {time.perf_counter() - t:.2f} s, peak RSS {rss_mb():.0f} MB, {outcome}")
        with hub.session() as s:
            pending = jobs.unfinished_jobs(s)
        t = time.perf_counter()
        for job_id in pending:
            run_ingest(hub, job_id)
        kind = hub.file_info(info.sha256).kind
        print(f"ingest: {time.perf_counter() - t:.2f} s, peak RSS {rss_mb():.0f} MB, stored as {kind}")
        hub.close()


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        Path(sys.argv[3]).write_bytes(model(int(sys.argv[2])))
    else:
        main(Path(sys.argv[1]), sys.argv[2])
