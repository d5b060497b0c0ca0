"""A real deltahub server with real models pushed, and a real headless Chromium driven by Selenium.

One server per module (pushing and ingesting the models takes seconds); one browser per module, with a
fresh profile and every network feature off so Chromium talks to nothing but the server under test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from storage.app.hub import Hub
from storage.app.views import FileAddition
from tests.models import DATASET_ROWS, dataset, finetune, make_weights, to_gguf, to_onnx, to_safetensors, to_torch
from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

HOSTILE_CARD = """---
license: apache-2.0
base_model: org/base-model
---
# Base model <script>document.title='pwned'</script>

A card with a [bad link](javascript:alert(1)), an <img src=x onerror="alert(2)"> image,
<a href="javascript:alert(3)" onclick="alert(4)">raw html</a> and a [good link](https://example.org/docs).

| layer | params |
|---|---|
| attn | 4096 |
"""
HOSTILE_PATH = "notes/<script>alert(5)</script>.txt"
# Tensor names come from the files people push: a GGUF's and a pickle's, shown on the file page.
HOSTILE_GGUF_TENSOR = "<script>alert(8)</script>"
HOSTILE_TORCH_TENSOR = 'bert.<img src=x onerror="alert(9)">'
# The other formats' files, each coded against org/base-model's safetensors (repo -> path).
FORMAT_FILES = {"org/base-gguf": "model.gguf", "org/base-torch": "pytorch_model.bin", "org/base-onnx": "model.onnx"}
HOSTILE_MESSAGE = 'add notes <img src=x onerror="alert(6)">'


@dataclass
class WebHub:
    service: RunningService
    artifacts: Path
    # Family membership as pushed: child repo -> base repo.
    lineage: dict[str, str]

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def hub(self) -> Hub:
        return self.service.hub


def push(hub: Hub, repo_id: str, files: dict[str, bytes], *, private: bool = False, message: str | None = None,
         base: str | None = None) -> None:
    hub.create_repo(repo_id, private=private, exist_ok=True)
    additions = []
    for path, data in files.items():
        info = hub.upload([data], expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
        additions.append(FileAddition(path, info.sha256))
    hub.commit(repo_id, "main", message=message or f"upload {', '.join(sorted(files))}", additions=additions,
               author="alice", declared_base=base)


def populate(hub: Hub) -> dict[str, str]:
    base = make_weights(1)
    chat = finetune(base, 2)
    config = b'{"architectures": ["TinyLM"], "hidden_size": 64}'
    push(hub, "org/base-model", {"model.safetensors": to_safetensors(base), "config.json": config,
                                 "README.md": HOSTILE_CARD.encode()})
    hub.queue.wait(60)  # type: ignore[union-attr]  # the base first, so fine-tunes find it
    push(hub, "org/chat-ft", {"model.safetensors": to_safetensors(chat), "config.json": config,
                              "README.md": b"# Chat fine-tune\n\nTuned from **org/base-model**.\n"},
         base="org/base-model")
    push(hub, "org/secret-ft", {"model.safetensors": to_safetensors(finetune(base, 4)), "config.json": config},
         private=True, base="org/base-model")
    hub.queue.wait(60)  # type: ignore[union-attr]
    push(hub, "org/chat-ft-v2", {"model.safetensors": to_safetensors(finetune(chat, 3, scale=1e-4)),
                                 "config.json": config}, base="org/chat-ft")
    push(hub, "org/mirror", {"model.safetensors": to_safetensors(base), "config.json": config})
    push(hub, "other/unrelated", {"model.safetensors": to_safetensors(make_weights(9), dtype="BF16")})
    push_formats(hub, base)
    push(hub, "org/base-model", {HOSTILE_PATH: b"just text\n"}, message=HOSTILE_MESSAGE)
    hub.queue.wait(120)  # type: ignore[union-attr]
    _fail_last_job(hub)
    return {"org/chat-ft": "org/base-model", "org/secret-ft": "org/base-model", "org/chat-ft-v2": "org/chat-ft"}


def push_formats(hub: Hub, base: dict[str, np.ndarray]) -> None:
    """A fine-tune of org/base-model in each other tensor format, declared on the base, and a chunked
    dataset whose second version appends rows (its first version's chunks are shared)."""
    makers: dict[str, Callable[[dict[str, np.ndarray]], bytes]] = {
        "org/base-gguf": lambda w: to_gguf(w, quantized=HOSTILE_GGUF_TENSOR),
        "org/base-torch": lambda w: to_torch(w, prefix="bert.", extra=HOSTILE_TORCH_TENSOR),
        "org/base-onnx": to_onnx,
    }
    for seed, (repo, path) in enumerate(FORMAT_FILES.items(), start=20):
        push(hub, repo, {path: makers[repo](finetune(base, seed))}, base="org/base-model")
    v1 = dataset(DATASET_ROWS)
    push(hub, "org/dataset", {"data.jsonl": v1})
    hub.queue.wait(120)  # type: ignore[union-attr]
    push(hub, "org/dataset", {"data.jsonl": v1 + dataset(DATASET_ROWS // 10, seed=1)})


FAILED_JOB_MESSAGE = "<b>frame 3</b> failed its checksum"


def _fail_last_job(hub: Hub) -> None:
    """A failed job for the queue page, as a worker would record it (ingest itself refuses to fail here)."""
    from sqlalchemy import func, select

    from storage.catalog import jobs
    from storage.catalog.models import IngestJob

    with hub.session() as s:
        last = s.scalar(select(func.max(IngestJob.id)))
        assert last is not None
        jobs.fail_job(s, last, FAILED_JOB_MESSAGE, final=True)


@pytest.fixture(scope="module")
def web_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    root = tmp_path_factory.mktemp("web")
    runner = start_service(root, TEST_OPTIONS, ingest=True)
    service = next(runner)
    lineage = populate(service.hub)
    artifacts = root / "screenshots"
    artifacts.mkdir()
    yield WebHub(service, artifacts, lineage)
    next(runner, None)


def _browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not _browser_available():
        reason = "headless Chromium is not installed (scripts/install-browser.sh)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it (scripts/test.sh): a missing browser is a failure there
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="deltahub-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--window-size=1360,900", "--hide-scrollbars",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


SCREENSHOTS_FOR_DOCS = os.environ.get("DELTAHUB_SCREENSHOTS_DIR")
__all__ = [
    "FAILED_JOB_MESSAGE", "FORMAT_FILES", "HOSTILE_CARD", "HOSTILE_GGUF_TENSOR", "HOSTILE_MESSAGE", "HOSTILE_PATH",
    "HOSTILE_TORCH_TENSOR", "WRITE_TOKEN", "WebHub",
]
