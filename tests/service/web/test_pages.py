"""Every page in a real headless Chromium against a real server with real models pushed and ingested.

What a person would check: the right repositories and numbers, how each file is stored, the lineage
edges, private repositories invisible without a token, hostile content inert, and no console errors.
A screenshot of each page is kept under the test's tmp directory (and copied to
$DELTAHUB_SCREENSHOTS_DIR when set).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from service.web import routes
from service.web.render import human_bytes
from tests.models import LAYOUT
from tests.service.conftest import READ_TOKEN, WRITE_TOKEN
from tests.service.web.conftest import (
    FAILED_JOB_MESSAGE,
    FORMAT_FILES,
    HOSTILE_GGUF_TENSOR,
    HOSTILE_MESSAGE,
    HOSTILE_PATH,
    HOSTILE_TORCH_TENSOR,
    WebHub,
)

PUBLIC = {"org/base-model", "org/chat-ft", "org/chat-ft-v2", "org/mirror", "other/unrelated", "org/dataset",
          *FORMAT_FILES}
PRIVATE = "org/secret-ft"


def visit(browser: Any, web: WebHub, path: str, shot: str | None = None, *, status: int = 200) -> Any:
    """Load a page, fail on any console error or script dialog, keep a full-page screenshot.

    `status`: the page's own expected error status, which Chromium logs as a console error too.
    """
    browser.get(web.url + path)
    assert browser.execute_script("return document.readyState") == "complete"
    expected = f"{web.url}{path} - Failed to load resource: the server responded with a status of {status}"
    errors = [e for e in browser.get_log("browser")
              if e["level"] in ("SEVERE", "ERROR") and not (status != 200 and e["message"].startswith(expected))]
    assert not errors, errors
    try:
        alert = browser.switch_to.alert
        pytest.fail(f"a script ran and opened a dialog: {alert.text!r}")
    except NoAlertPresentException:
        pass
    if shot:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1360, min(max(height, 700), 4000))
        target = web.artifacts / f"{shot}.png"
        browser.save_screenshot(str(target))
        browser.set_window_size(1360, 900)
        docs = os.environ.get("DELTAHUB_SCREENSHOTS_DIR")
        if docs:
            shutil.copy(target, docs)
    return browser


def sign_in(browser: Any, web: WebHub, token: str) -> None:
    visit(browser, web, "/ui/signin")
    browser.find_element(By.ID, "token").send_keys(token)
    # The click returns before the redirect lands: wait for the signed-in page.
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]"))
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".pill-user"))
    assert browser.get_cookie("deltahub_session") is not None


def click_and_wait(browser: Any, element: Any) -> None:
    """Click a link or button and wait until the next page has replaced this one."""
    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 10).until(lambda d: _stale(old))
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _stale(element: Any) -> bool:
    try:
        element.is_enabled()
        return False
    except WebDriverException:
        # Stale, or (chromedriver, when the document is swapped mid-call) "Node with given id does not
        # belong to the document": either way the old page is gone.
        return True


def sign_out(browser: Any, web: WebHub) -> None:
    browser.delete_all_cookies()


@pytest.fixture
def anonymous(browser: Any, web_hub: WebHub) -> Any:
    sign_out(browser, web_hub)
    return browser


@pytest.fixture
def reader(browser: Any, web_hub: WebHub) -> Any:
    sign_out(browser, web_hub)
    sign_in(browser, web_hub, READ_TOKEN)
    yield browser
    sign_out(browser, web_hub)


@pytest.fixture
def admin(browser: Any, web_hub: WebHub) -> Any:
    sign_out(browser, web_hub)
    sign_in(browser, web_hub, WRITE_TOKEN)
    yield browser
    sign_out(browser, web_hub)


def texts(browser: Any, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def attrs(browser: Any, selector: str, name: str) -> list[str]:
    return [e.get_attribute(name) for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def model_sha(web: WebHub, repo_id: str, path: str = "model.safetensors") -> str:
    head = web.hub.resolve(repo_id, "main")
    return web.hub.get_entry(repo_id, head.oid, path).file.sha256


def test_home_shows_the_totals_and_where_the_saving_came_from(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/", "home")
    report = web_hub.hub.stats()
    logical, physical = int(report["logical_bytes"]), int(report["physical_bytes"])  # type: ignore[call-overload]
    assert b.find_element(By.ID, "logical").text == human_bytes(logical)
    assert b.find_element(By.ID, "physical").text == human_bytes(physical)
    assert b.find_element(By.ID, "saved").text == human_bytes(logical - physical)
    assert physical < logical
    # The chart draws a slice per source that saved something; these models save by dedup and delta.
    slices = set(attrs(b, "svg.chart rect[data-slice]", "data-slice"))
    assert {"stored", "file_dedup", "delta_coding"} <= slices
    assert set(attrs(b, ".legend li", "data-source")) == slices
    # The most recently updated public repositories (six of them).
    recent = sorted((r for r in web_hub.hub.browse.repositories() if not r.private),
                    key=lambda r: r.updated_at, reverse=True)[:6]
    assert attrs(b, ".repo-card", "data-repo") == [r.repo_id for r in recent]


def test_repositories_lists_what_the_caller_may_see(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/repos", "repositories")
    assert set(attrs(b, "#repos tr[data-repo]", "data-repo")) == PUBLIC
    assert PRIVATE not in b.page_source

    visit(b, web_hub, "/ui/repos?q=chat")
    assert set(attrs(b, "#repos tr[data-repo]", "data-repo")) == {"org/chat-ft", "org/chat-ft-v2"}

    visit(b, web_hub, "/ui/repos?sort=name")
    assert attrs(b, "#repos tr[data-repo]", "data-repo") == sorted(PUBLIC)

    visit(b, web_hub, "/ui/repos?sort=savings")
    ordered = attrs(b, "#repos tr[data-repo]", "data-repo")
    saved = {r.repo_id: r.logical_bytes - r.stored_bytes for r in web_hub.hub.browse.repositories()}
    assert [saved[r] for r in ordered] == sorted((saved[r] for r in ordered), reverse=True)
    # Of the safetensors models, a fine-tune of a fine-tune, stored as a small delta, saves the most.
    assert next(r for r in ordered if r not in FORMAT_FILES and r != "org/dataset") == "org/chat-ft-v2"


def test_private_repositories_appear_only_with_a_token(reader: Any, web_hub: WebHub) -> None:
    b = visit(reader, web_hub, "/ui/repos", "repositories-signed-in")
    assert set(attrs(b, "#repos tr[data-repo]", "data-repo")) == PUBLIC | {PRIVATE}
    row = b.find_element(By.CSS_SELECTOR, f'#repos tr[data-repo="{PRIVATE}"]')
    assert "private" in row.text
    visit(b, web_hub, f"/ui/models/{PRIVATE}")
    assert PRIVATE in b.find_element(By.CSS_SELECTOR, "h1").text


def test_a_private_repository_is_answered_as_a_missing_one(anonymous: Any, web_hub: WebHub) -> None:
    pages = {}
    for repo_id in (PRIVATE, "org/no-such-model"):
        b = visit(anonymous, web_hub, f"/ui/models/{repo_id}", "not-found", status=404)
        pages[repo_id] = b.find_element(By.CSS_SELECTOR, "main").text
        file_page = httpx.get(f"{web_hub.url}/ui/models/{repo_id}/blob/main/model.safetensors")
        assert file_page.status_code == 404
    assert pages[PRIVATE] == pages["org/no-such-model"]
    for path in ("/", "/ui/repos", "/ui/families", "/ui/families/1"):
        assert PRIVATE not in httpx.get(web_hub.url + path).text, path
    # A bearer token does not sign pages in: only the cookie does, so a page never trusts a header
    # a cross-site request could not set anyway, and API and page rules stay one rule.
    bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert httpx.get(f"{web_hub.url}/ui/models/{PRIVATE}", headers=bearer).status_code == 404


def test_a_repository_shows_its_files_storage_card_commits_and_snippet(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/chat-ft", "repository")
    rows = {r.get_attribute("data-path"): r.text for r in b.find_elements(By.CSS_SELECTOR, "#files tr[data-path]")}
    assert set(rows) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    assert "DELTA" in rows["model.safetensors"].upper()
    assert "org/base-model/model.safetensors" in rows["model.safetensors"]
    assert "DEDUP" in rows["config.json"].upper()  # the same config.json is held once for all
    card = b.find_element(By.ID, "model-card")
    assert card.find_element(By.TAG_NAME, "h1").text == "Chat fine-tune"
    assert card.find_element(By.TAG_NAME, "strong").text == "org/base-model"
    snippet = " ".join(texts(b, ".snippet"))
    assert 'snapshot_download(' in snippet and '"org/chat-ft"' in snippet and web_hub.url in snippet
    assert "deltahub pull org/chat-ft" in snippet
    assert texts(b, "#branches li a") == ["main"]
    commits = texts(b, "#commits li")
    assert len(commits) == len(web_hub.hub.list_commits("org/chat-ft", "main")) == 2  # the push and the initial commit
    # Clicking a file opens its page.
    click_and_wait(b, b.find_element(By.CSS_SELECTOR, '#files tr[data-path="model.safetensors"] a'))
    assert b.find_element(By.CSS_SELECTOR, "h1").text == "model.safetensors"


def test_hostile_model_card_path_and_message_render_as_text(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/base-model", "repository-hostile")
    assert b.title.endswith("deltahub") and "pwned" not in b.title
    card = b.find_element(By.ID, "model-card")
    assert card.find_element(By.TAG_NAME, "h1").text == "Base model <script>document.title='pwned'</script>"
    assert not card.find_elements(By.CSS_SELECTOR, "script, img, iframe, [onerror], [onclick]")
    hrefs = attrs(card, "a", "href")
    assert hrefs == ["https://example.org/docs"], hrefs
    assert "javascript:" not in " ".join(hrefs)
    # Raw HTML in the card is shown, not run.
    assert '<img src=x onerror="alert(2)">' in card.text
    # A page-wide check: no element anywhere carries an event handler or a javascript: URL.
    handlers = b.execute_script(
        "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
        ".filter(a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value)).map(a => a.name)")
    assert handlers == []
    assert len(b.find_elements(By.TAG_NAME, "script")) == 0
    row = b.find_element(By.CSS_SELECTOR, "#files tr[data-path^='notes/']")
    assert row.get_attribute("data-path") == HOSTILE_PATH
    assert row.find_element(By.TAG_NAME, "a").text == HOSTILE_PATH
    assert HOSTILE_MESSAGE in texts(b, "#commits li")[0]
    # The hostile path's own page: the name is a heading, the download link the real file.
    click_and_wait(b, row.find_element(By.TAG_NAME, "a"))
    assert b.find_element(By.CSS_SELECTOR, "h1").text == HOSTILE_PATH
    href = b.find_element(By.ID, "download").get_attribute("href")
    assert httpx.get(href).content == b"just text\n"
    # A search for markup is echoed as text.
    visit(b, web_hub, "/ui/repos?q=%3Cscript%3Ealert(7)%3C%2Fscript%3E")
    search = b.find_element(By.CSS_SELECTOR, ".toolbar input[name=q]")
    assert search.get_attribute("value") == "<script>alert(7)</script>"
    # Tensor names come from the pushed files (a GGUF's header, a checkpoint's pickle): shown as text.
    for repo, name in (("org/base-gguf", HOSTILE_GGUF_TENSOR), ("org/base-torch", HOSTILE_TORCH_TENSOR)):
        visit(b, web_hub, f"/ui/models/{repo}/blob/main/{FORMAT_FILES[repo]}", f"file-hostile-{repo[4:]}")
        row = next(r for r in b.find_elements(By.CSS_SELECTOR, "#tensors tr[data-tensor]")
                   if r.get_attribute("data-tensor") == name)
        assert row.find_element(By.TAG_NAME, "code").text == name
        assert not b.find_elements(By.CSS_SELECTOR, "script, img, [onerror]")
        assert b.execute_script(
            "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
            ".filter(a => a.name.startsWith('on')).length") == 0


def test_a_weight_file_shows_its_tensor_table(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/chat-ft/blob/main/model.safetensors", "file")
    rows = b.find_elements(By.CSS_SELECTOR, "#tensors tr[data-tensor]")
    assert [r.get_attribute("data-tensor") for r in rows] == list(LAYOUT)
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert first[1].text == "F32"
    assert first[2].text == "[512, 64]"
    assert first[3].text == human_bytes(512 * 64 * 4)
    # A fine-tune's tensors are delta-coded against the base's and stored in less than their size.
    codecs = [r.find_elements(By.TAG_NAME, "td")[6].text for r in rows]
    assert all("DEPTH 1" in c.upper() for c in codecs), codecs
    for r in rows:
        cells = r.find_elements(By.TAG_NAME, "td")
        assert int(cells[5].text.rstrip("%")) < 100
    detail = b.find_element(By.ID, "storage-detail")
    assert detail.text == "against org/base-model/model.safetensors"
    href = b.find_element(By.ID, "download").get_attribute("href")
    body = httpx.get(href).content
    assert hashlib.sha256(body).hexdigest() == model_sha(web_hub, "org/chat-ft")
    # The base link opens the base's file page.
    click_and_wait(b, detail.find_element(By.TAG_NAME, "a"))
    assert "org/base-model" in b.find_element(By.CSS_SELECTOR, ".crumbs").text


def test_a_plain_file_shows_its_size_and_storage(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/models/org/chat-ft/blob/main/config.json", "file-config")
    assert not b.find_elements(By.ID, "tensors")
    stats = " ".join(texts(b, ".stat"))
    assert "blob" in stats and "DEDUP" in stats.upper()


def test_the_lineage_draws_each_delta_edge_with_what_it_saves(anonymous: Any, web_hub: WebHub) -> None:
    b = visit(anonymous, web_hub, "/ui/families", "families")
    families = attrs(b, "#families tr[data-family]", "data-family")
    assert families
    family_id = web_hub.hub.browse.families()[0].id
    b = visit(b, web_hub, f"/ui/families/{family_id}", "family")
    edges = {(e.get_attribute("data-child"), e.get_attribute("data-base")): e.text
             for e in b.find_elements(By.CSS_SELECTOR, "svg.lineage g.edge")}
    for child, base in web_hub.lineage.items():
        if child == PRIVATE:
            continue
        key = (model_sha(web_hub, child), model_sha(web_hub, base))
        assert key in edges, (child, base)
        assert edges[key].startswith("saves ") and not edges[key].startswith("saves 0 B")
    # The private fine-tune is a node with no name and no link.
    labels = texts(b, "svg.lineage .node-label")
    assert "private file" in labels and PRIVATE not in b.page_source
    assert set(labels) >= {"org/base-model", "org/chat-ft", "org/chat-ft-v2"}
    # Click through to a repository.
    v2 = model_sha(web_hub, "org/chat-ft-v2")
    click_and_wait(b, b.find_element(By.CSS_SELECTOR, f'svg.lineage a[data-node="{v2}"]'))
    assert b.current_url.endswith("/ui/models/org/chat-ft-v2")


def test_the_lineage_names_private_members_only_for_a_token(reader: Any, web_hub: WebHub) -> None:
    family_id = web_hub.hub.browse.families()[0].id
    b = visit(reader, web_hub, f"/ui/families/{family_id}")
    assert PRIVATE in texts(b, "svg.lineage .node-label")


def test_a_large_family_collapses_into_boxes_to_click(
    anonymous: Any, web_hub: WebHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of fine-tunes of one base would be unreadable: past a limit they fold into "+N more"."""
    monkeypatch.setattr(routes, "LINEAGE_MAX_CHILDREN", 1)
    family_id = web_hub.hub.browse.families()[0].id
    b = visit(anonymous, web_hub, f"/ui/families/{family_id}", "family-collapsed")
    base = model_sha(web_hub, "org/base-model")
    more = b.find_element(By.CSS_SELECTOR, f'svg.lineage a[data-node="more-{base}"]')
    found = web_hub.hub.browse.family(family_id)
    assert found is not None
    children = sum(1 for m in found[1] if m.base_sha256 == base)
    assert children >= 2 and more.text.startswith(f"+{children - 1} more")
    children_before = {e.get_attribute("data-child") for e in b.find_elements(By.CSS_SELECTOR, "g.edge")
                       if e.get_attribute("data-base") == base and e.get_attribute("data-child") != f"more-{base}"}
    click_and_wait(b, more)
    children_after = {e.get_attribute("data-child") for e in b.find_elements(By.CSS_SELECTOR, "g.edge")
                      if e.get_attribute("data-base") == base and e.get_attribute("data-child") != f"more-{base}"}
    assert children_after and children_after.isdisjoint(children_before)


def test_the_ingest_queue_is_for_administrators(browser: Any, web_hub: WebHub) -> None:
    sign_out(browser, web_hub)
    assert httpx.get(f"{web_hub.url}/ui/queue").status_code == 401
    sign_in(browser, web_hub, READ_TOKEN)
    assert not browser.find_elements(By.LINK_TEXT, "Ingest queue")
    sign_out(browser, web_hub)
    sign_in(browser, web_hub, WRITE_TOKEN)
    b = visit(browser, web_hub, "/ui/queue", "queue")
    counts = web_hub.hub.browse.totals().jobs
    assert b.find_element(By.ID, "count-failed").text == str(counts["failed"]) == "1"
    assert b.find_element(By.ID, "count-done").text == str(counts["done"])
    failed = b.find_element(By.CSS_SELECTOR, '#jobs tr[data-state="failed"]')
    assert FAILED_JOB_MESSAGE in failed.text  # the markup in a worker's message is text too
    assert not failed.find_elements(By.TAG_NAME, "b")
    assert "org/base-model" in failed.text
    sign_out(browser, web_hub)


def test_sign_in_keeps_the_token_in_a_strict_httponly_cookie(browser: Any, web_hub: WebHub) -> None:
    sign_out(browser, web_hub)
    visit(browser, web_hub, "/ui/signin")
    browser.find_element(By.ID, "token").send_keys("not-a-token")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]"))
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, ".alert").text
    assert [e["message"].split(" - ")[1] for e in browser.get_log("browser")] == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    assert browser.get_cookie("deltahub_session") is None
    sign_in(browser, web_hub, WRITE_TOKEN)
    cookie = browser.get_cookie("deltahub_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read either cookie
    assert "alice" in browser.find_element(By.CSS_SELECTOR, ".who").text
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, ".who button"))
    assert browser.get_cookie("deltahub_session") is None
    assert "Sign in" in browser.find_element(By.CSS_SELECTOR, ".who").text


def test_forms_that_change_state_need_the_csrf_token(web_hub: WebHub) -> None:
    with httpx.Client(base_url=web_hub.url) as http:
        http.get("/ui/signin")
        csrf = http.cookies["deltahub_csrf"]
        assert http.post("/ui/signin", data={"token": WRITE_TOKEN}).status_code == 403
        assert http.post("/ui/signin", data={"token": WRITE_TOKEN, "csrf_token": "x" * 43}).status_code == 403
        other_site = http.post("/ui/signin", data={"token": WRITE_TOKEN, "csrf_token": csrf},
                               headers={"Origin": "https://evil.example"})
        assert other_site.status_code == 403
        ok = http.post("/ui/signin", data={"token": WRITE_TOKEN, "csrf_token": csrf, "next": "//evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        assert http.post("/ui/signout").status_code == 403
        assert http.get("/ui/queue").status_code == 200
        assert http.post("/ui/signout", data={"csrf_token": csrf}).status_code == 303


def test_pages_forbid_scripts_and_framing(web_hub: WebHub) -> None:
    response = httpx.get(f"{web_hub.url}/ui/models/org/base-model")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
