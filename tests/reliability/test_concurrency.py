"""Many clients at once: fine-tunes of one base pushed and pulled together, identical files pushed to
different repositories at the same moment, GC running throughout.

The clients are the unmodified huggingface_hub, each in its own thread, against one uvicorn server
with the embedded worker. GC loops with the hub's grace period (2 s here, longer than any ingest of
these models takes; GC with grace 0 during ingest is unsafe by design, see docs/reliability.md), and
has work to do: a deleted model, older than the grace period, holds a tensor every fine-tune brings
again, so GC may drop it just as an ingest counts on it (the ingest's foreign key then fails and it
re-encodes). Afterwards every file reads back byte-exact, and nothing is stored twice.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from sqlalchemy import func, select

from service.app import create_app
from storage.app.gitattributes import MODEL_GITATTRIBUTES
from storage.app.hub import Hub
from storage.catalog.models import FileObject, FileSegment, IngestJob
from storage.settings import load_settings
from tests.models import finetune, make_weights, to_safetensors
from tests.reliability import scenario
from tests.reliability.figures import Figures
from tests.reliability.harness import Backend, start_driver, tail, wait_stopped
from tests.reliability.invariants import check_clean, check_committed, store_keys
from tests.reliability.server import running
from tests.service.conftest import TEST_OPTIONS, TOKENS, WRITE_TOKEN
from workers.jobs.gc import collect_garbage
from workers.runtime import open_hub

CLIENTS = 8
GC_GRACE_SECONDS = 2
BASE_REPO = "alice/base"
# Every fine-tune retrains this tensor to the same new value: concurrent ingests of different files
# meet the same new tensor, and only one may keep it.
SHARED_NEW = "layer.1.mlp.weight"


def _model_files(base: dict[str, np.ndarray], i: int, shared_new: np.ndarray) -> dict[str, bytes]:
    weights = finetune(base, 100 + i, frozen=("embeddings.weight",))
    weights[SHARED_NEW] = shared_new
    return {
        "model.safetensors": to_safetensors(weights, "BF16", metadata={"format": "pt"}),
        "config.json": b'{"_name_or_path": "alice/base", "model_type": "toy"}',
        # Identical in every repository, pushed by every client at the same moment.
        "adapter.safetensors": to_safetensors(make_weights(7, {"adapter.weight": (128, 64)}), "BF16"),
        "tokenizer.json": b'{"vocab": ["a", "b", "c"]}',
    }


@pytest.fixture
def server(tmp_path: Path, hf_client_env: Path) -> Iterator[tuple[str, Hub]]:
    settings = load_settings(data_dir=tmp_path / "hub", gc_grace_seconds=GC_GRACE_SECONDS, frame_bytes=16 << 10,
                             pack_target_bytes=64 << 10)
    hub = open_hub(settings)
    with running(create_app(hub, settings, TOKENS, options=TEST_OPTIONS)) as url:
        yield url, hub
    hub.queue.close()  # type: ignore[union-attr]
    hub.engine.dispose()


def test_clients_push_and_pull_fine_tunes_of_one_base_while_gc_runs(
    server: tuple[str, Hub], tmp_path: Path, figures: Figures
) -> None:
    url, hub = server
    base = make_weights(21)
    shared_new = finetune(base, 999)[SHARED_NEW]
    base_files = {"model.safetensors": to_safetensors(base, "BF16", metadata={"format": "pt"})}
    repos = {f"alice/ft-{i}": _model_files(base, i, shared_new) for i in range(CLIENTS)}
    api = HfApi(endpoint=url, token=WRITE_TOKEN)
    api.create_repo(BASE_REPO)
    api.upload_file(path_or_fileobj=base_files["model.safetensors"], path_in_repo="model.safetensors",
                    repo_id=BASE_REPO)
    garbage = to_safetensors({SHARED_NEW: shared_new, "other.weight": make_weights(5)["norm.weight"]}, "BF16")
    api.create_repo("alice/deleted")
    api.upload_file(path_or_fileobj=garbage, path_in_repo="model.safetensors", repo_id="alice/deleted")
    hub.queue.wait(timeout=60)  # type: ignore[union-attr]
    api.delete_repo("alice/deleted")
    time.sleep(GC_GRACE_SECONDS + 0.5)  # old enough to collect

    start = threading.Barrier(CLIENTS + 3)
    pushing = threading.Event()
    pushing.set()
    errors: list[str] = []
    gc_runs, gc_freed = [0], [0]

    def client(i: int) -> None:
        repo_id = f"alice/ft-{i}"
        folder = tmp_path / f"client-{i}"
        folder.mkdir()
        for path, data in repos[repo_id].items():
            (folder / path).write_bytes(data)
        mine = HfApi(endpoint=url, token=WRITE_TOKEN)
        try:
            mine.create_repo(repo_id)
            start.wait()
            mine.upload_folder(folder_path=folder, repo_id=repo_id)
            pulled = Path(snapshot_download(repo_id, endpoint=url, cache_dir=tmp_path / f"pull-{i}"))
            wanted = {**repos[repo_id], ".gitattributes": MODEL_GITATTRIBUTES}  # with the initial commit's
            if {p.name: p.read_bytes() for p in pulled.iterdir()} != wanted:
                errors.append(f"{repo_id}: pulled bytes differ")
        except Exception as exc:
            errors.append(f"{repo_id}: {type(exc).__name__}: {exc}")

    def reader(n: int) -> None:
        start.wait()
        while pushing.is_set():
            path = hf_hub_download(BASE_REPO, "model.safetensors", endpoint=url,
                                   cache_dir=tmp_path / f"reader-{n}-{time.monotonic_ns()}")
            if Path(path).read_bytes() != base_files["model.safetensors"]:
                errors.append("base: pulled bytes differ")

    def gc_loop() -> None:
        start.wait()
        while pushing.is_set():
            report = collect_garbage(hub)  # the hub's grace period: GC_GRACE_SECONDS
            gc_runs[0] += 1
            gc_freed[0] += report.files + report.tensors + len(report.deleted_keys)
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=reader, args=(n,)) for n in range(2)] + [threading.Thread(target=gc_loop)]
    for thread in threads:
        thread.start()
    for thread in threads[:CLIENTS]:
        thread.join(timeout=300)
    hub.queue.wait(timeout=300)  # type: ignore[union-attr]
    pushing.clear()
    for thread in threads[CLIENTS:]:
        thread.join(timeout=60)
    assert errors == []
    assert gc_runs[0] > 0 and gc_freed[0] > 0, "GC had nothing to do while clients pushed"

    expected = {hashlib.sha256(d).hexdigest(): d for files in [base_files, *repos.values()] for d in files.values()}
    expected[hashlib.sha256(MODEL_GITATTRIBUTES).hexdigest()] = MODEL_GITATTRIBUTES  # the initial commits'
    readback = check_committed(hub, expected)
    assert readback.problems == []
    for repo_id, files in repos.items():
        for path, data in files.items():
            got = httpx.get(f"{url}/{repo_id}/resolve/main/{path}")
            assert got.status_code == 200 and got.content == data, (repo_id, path)
    with hub.session() as s:
        assert s.scalar(select(func.count()).select_from(FileObject)) == len(expected)
        assert all(f.state == "stored" for f in s.scalars(select(FileObject)))
        # The identical adapter: one file, its segments recorded once.
        adapter = hashlib.sha256(repos["alice/ft-0"]["adapter.safetensors"]).hexdigest()
        assert s.scalar(select(func.count()).select_from(FileSegment).where(FileSegment.file_sha256 == adapter)) == 2
    collect_garbage(hub, grace_seconds=0)  # every ingest is over: grace 0 is safe now
    assert check_clean(hub) == []
    stats = hub.stats()
    assert stats["physical_bytes"] < stats["logical_bytes"] / 2  # type: ignore[operator]
    figures.clients(CLIENTS)
    figures.add(bytes_checked=readback.bytes_checked, bytes_lost=readback.bytes_lost)


def test_gc_drops_the_tensors_an_ingest_is_counting_on(local_backend: Backend, tmp_path: Path,
                                                       figures: Figures) -> None:
    """The worst interleaving, made exact: the ingest has chosen to reuse stored tensors (a frozen one
    by dedup, the rest as delta bases) when GC removes them, because the only file holding them was
    deleted. The ingest's transaction must fail on its foreign keys, and its retry re-encode."""
    hub = local_backend.hub()
    models = scenario.models()
    scenario.run_jobs(hub, scenario.push(hub, "org/base", models["org/base"]))
    hub.delete_repo("org/base")
    scenario.push(hub, "org/tuned2", models["org/tuned2"])  # shares a frozen tensor with the base
    before = store_keys(hub)
    log = tmp_path / "worker.log"
    worker = start_driver(local_backend, "resume", crash_at="ingest.mid_encode:1", crash_signal="SIGSTOP", log=log)
    wait_stopped(worker)
    assert store_keys(hub) == before, "the ingest wrote objects already: GC with grace 0 would be unsafe"
    freed = collect_garbage(hub, grace_seconds=0)
    assert freed.files >= 1 and freed.tensors > 0
    os.kill(worker.pid, signal.SIGCONT)
    assert worker.wait(timeout=120) == 0, tail(log)

    with hub.session() as s:
        attempts = s.scalars(select(IngestJob.attempts)).all()
    assert max(attempts) == 2, "the first attempt should have failed on the vanished tensors"
    readback = check_committed(hub, scenario.all_files())
    assert readback.problems == [] and readback.files == len(models["org/tuned2"])
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    figures.add(bytes_checked=readback.bytes_checked, bytes_lost=readback.bytes_lost)


def test_an_ingest_slower_than_the_grace_period_gives_up_instead_of_committing(
    tmp_path: Path, figures: Figures
) -> None:
    """GC is safe against ingest only while ingests take less than the grace period: an ingest that
    outlives half of it must not commit rows for objects GC may already have collected as orphans."""
    backend = Backend("sqlite-local-short-grace",
                      {"data_dir": tmp_path / "hub", "gc_grace_seconds": 2, **scenario.HUB_SETTINGS})
    hub = backend.hub()
    scenario.run_jobs(hub, scenario.push(hub, "org/base", {}))  # the initial commit's file, ingested first
    initial = set(store_keys(hub))
    scenario.push(hub, "org/base", scenario.models()["org/base"])
    log = tmp_path / "worker.log"
    worker = start_driver(backend, "resume", crash_at="ingest.after_object_write:2", crash_signal="SIGSTOP",
                          log=log)
    wait_stopped(worker)
    written = set(store_keys(hub)) - initial - {k for k in store_keys(hub) if k.startswith("staging/")}
    assert written
    time.sleep(2.5)  # the ingest is stalled past the grace period
    freed = collect_garbage(hub)  # with the hub's own grace: the stalled ingest's objects are orphans now
    assert written <= set(freed.deleted_keys)
    os.kill(worker.pid, signal.SIGCONT)
    assert worker.wait(timeout=120) == 0, tail(log)
    # Said as what happened (the attempt gave itself up), not as a store outage.
    assert "ingest attempt abandoned: ingest of " in log.read_text()
    assert "more than half the GC grace period (2 s)" in log.read_text()
    assert "temporarily unavailable" not in log.read_text()
    readback = check_committed(hub, scenario.all_files())
    assert readback.problems == []
    collect_garbage(hub, grace_seconds=0)
    assert check_clean(hub) == []
    backend.close()
    figures.add(bytes_checked=readback.bytes_checked, bytes_lost=readback.bytes_lost)
