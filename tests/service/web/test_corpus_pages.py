"""The pages over the real dev corpus (DELTAHUB_CORPUS): real model cards, real families (slow)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from service.web.render import human_bytes
from tests.service.conftest import TEST_OPTIONS, start_service
from tests.service.web.conftest import WebHub, push
from tests.service.web.test_pages import visit


@pytest.fixture(scope="module")
def corpus_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    corpus = os.environ.get("DELTAHUB_CORPUS")
    if not corpus:
        pytest.skip("set DELTAHUB_CORPUS to the dev corpus directory")
    root = Path(corpus)
    models = json.loads((root / "corpus.json").read_text())["models"]
    base = tmp_path_factory.mktemp("web-corpus")
    runner = start_service(base, TEST_OPTIONS, ingest=True)
    service = next(runner)
    for model in models:
        namespace, _, rest = model["repo"].partition("/")
        files = {name: (root / model["repo"] / name).read_bytes() for name in model["files"]}
        push(service.hub, f"{namespace}/{rest.replace('/', '-')}", files)
        service.hub.queue.wait(1800)  # type: ignore[union-attr]  # in order: bases before their fine-tunes
    (base / "screenshots").mkdir()
    yield WebHub(service, base / "screenshots", {})
    next(runner, None)


@pytest.mark.slow
def test_every_corpus_page_loads_with_the_right_numbers(browser: Any, corpus_hub: WebHub) -> None:
    browser.delete_all_cookies()
    hub = corpus_hub.hub
    b = visit(browser, corpus_hub, "/", "corpus-home")
    report = hub.stats()
    logical, physical = int(report["logical_bytes"]), int(report["physical_bytes"])  # type: ignore[call-overload]
    assert b.find_element(By.ID, "logical").text == human_bytes(logical)
    assert b.find_element(By.ID, "physical").text == human_bytes(physical)
    b = visit(b, corpus_hub, "/ui/repos?sort=savings", "corpus-repositories")
    listed = [e.get_attribute("data-repo") for e in b.find_elements(By.CSS_SELECTOR, "#repos tr[data-repo]")]
    assert sorted(listed) == sorted(r.repo_id for r in hub.list_repos())
    for repo_id in listed:
        b = visit(b, corpus_hub, f"/ui/models/{repo_id}")
        paths = {e.get_attribute("data-path") for e in b.find_elements(By.CSS_SELECTOR, "#files tr[data-path]")}
        head = hub.resolve(repo_id, "main")
        assert paths == {e.path for e in hub.list_tree(repo_id, head.oid)}
        assert not b.find_elements(By.CSS_SELECTOR, "#model-card script, #model-card [onerror]")
        if "model.safetensors" in paths:
            b = visit(b, corpus_hub, f"/ui/models/{repo_id}/blob/main/model.safetensors")
            assert b.find_elements(By.CSS_SELECTOR, "#tensors tr[data-tensor]")
    for family in hub.browse.families():
        b = visit(b, corpus_hub, f"/ui/families/{family.id}", f"corpus-family-{family.id}")
        _, members = hub.browse.family(family.id)  # type: ignore[misc]
        shas = {m.sha256 for m in members}
        expected = {(m.sha256, m.base_sha256) for m in members if m.base_sha256 in shas}
        drawn = {(e.get_attribute("data-child"), e.get_attribute("data-base"))
                 for e in b.find_elements(By.CSS_SELECTOR, "svg.lineage g.edge")}
        assert expected <= drawn or len(members) > 60, family.id
