"""git clone / fetch / lfs pull against huggingface_hub's snapshot_download of the same repository.

    python3 bench/git_clone.py [--commits 100] [--lfs-mb 64] [--runs 5]

One server process (bench/transfer_server.py, embedded mode). A repository gets `--commits` commits of
small files through huggingface_hub and one LFS file of `--lfs-mb` MB; then, each run: `git clone`
without LFS content (the objects rebuilt from the catalog), `git lfs pull` (the LFS download route),
`git fetch` of one new commit, and `snapshot_download` of the same head into an empty cache (the
same-run reference: the Hub API's way to get the same files). Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from huggingface_hub import HfApi, snapshot_download  # noqa: E402

from bench.transfer import TOKEN, Server  # noqa: E402

REPO = "bench/git"


def git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=600)


def timed(action: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--lfs-mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "static").mkdir()
        home = work / "home"
        home.mkdir()
        env = {"HOME": str(home), "PATH": os.environ["PATH"], "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        server = Server(work / "hub", work / "static")
        try:
            (home / ".git-credentials").write_text(f"http://bench:{TOKEN}@127.0.0.1:{server.port}\n")
            git("config", "--global", "credential.helper", "store", cwd=home, env=env)
            git("config", "--global", "user.name", "bench", cwd=home, env=env)
            git("config", "--global", "user.email", "bench@example.org", cwd=home, env=env)
            git("lfs", "install", "--skip-repo", cwd=home, env=env)
            api = HfApi(endpoint=server.url, token=TOKEN)
            api.create_repo(REPO)
            api.upload_file(path_or_fileobj=os.urandom(args.lfs_mb * 1_000_000), path_in_repo="model.bin",
                            repo_id=REPO)
            for i in range(args.commits):
                api.upload_file(path_or_fileobj=f'{{"step": {i}}}\n'.encode(), path_in_repo="config.json",
                                repo_id=REPO)
            rows: dict[str, list[float]] = {"git clone (no LFS content)": [], "git lfs pull": [],
                                            "git fetch (1 new commit)": [], "snapshot_download (reference)": []}
            url = f"{server.url}/{REPO}"
            for run in range(args.runs):
                clone, cache = work / f"clone{run}", work / f"cache{run}"
                skip = {**env, "GIT_LFS_SKIP_SMUDGE": "1"}
                rows["git clone (no LFS content)"].append(timed(git, "clone", "-q", url, str(clone), cwd=work,
                                                                env=skip))
                rows["git lfs pull"].append(timed(git, "lfs", "pull", cwd=clone, env=env))
                api.upload_file(path_or_fileobj=f"run {run}\n".encode(), path_in_repo="run.txt", repo_id=REPO)
                rows["git fetch (1 new commit)"].append(timed(git, "fetch", "-q", cwd=clone, env=env))
                rows["snapshot_download (reference)"].append(
                    timed(snapshot_download, REPO, endpoint=server.url, token=TOKEN, cache_dir=str(cache))
                )
        finally:
            server.stop()
    print(f"{args.commits + 2} commits, one {args.lfs_mb} MB LFS file; median of {args.runs} runs\n")
    print("| operation | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
