"""Downloads of a hot file, through the real server: served from its verified copy with the very headers
and bytes a rebuilt read has, falling back to reconstruction (and rewriting the copy) when the copy is
damaged, and never served once the file is gone."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.routes.resolve import SMALL_BODY
from storage.core import keys
from tests.models import LAYOUT, make_weights, to_safetensors
from tests.service.conftest import TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service
from workers.jobs.gc import collect_garbage

URL = "/alice/m/resolve/main/model.safetensors"
# Headers a response carries whatever served it, and may differ between two responses.
PER_RESPONSE = {"date", "server", "x-request-id"}


@pytest.fixture(params=["small", "large"])
def hot(
    request: pytest.FixtureRequest, tmp_path: Path, hf_client_env: Path
) -> Iterator[tuple[RunningService, bytes, str]]:
    """A stored file read whole in one message (small) or streamed (large: over resolve.SMALL_BODY)."""
    runner = start_service(tmp_path, TEST_OPTIONS, ingest=True, settings={"hot_cache_bytes": 64 << 20})
    service = next(runner)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    layout = {**LAYOUT, "big.weight": (1280, 256)} if request.param == "large" else LAYOUT
    data = to_safetensors(make_weights(seed=11, layout=layout), metadata={"format": "pt"})
    assert (len(data) > SMALL_BODY) == (request.param == "large")
    api.create_repo("alice/m")
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id="alice/m")
    service.hub.queue.wait(timeout=120)
    sha = hashlib.sha256(data).hexdigest()
    assert service.hub.file_info(sha).state == "stored"
    yield service, data, sha
    next(runner, None)


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """A copy is kept once the body's iterator ends, which may be just after the client has it all."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def copy_path(service: RunningService, sha: str) -> Path:
    return service.hub.settings.resolved_hot_cache_dir / sha


def make_hot(service: RunningService, data: bytes, sha: str) -> None:
    for _ in range(service.hub.settings.hot_cache_reads):
        assert service.http.get(URL).content == data
    wait_until(lambda: sha in service.hub.reads.hot)


REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("GET", {}),
    ("HEAD", {}),
    ("GET", {"Range": "bytes=10-99"}),
    ("GET", {"Range": "bytes=-7"}),
    ("GET", {"Range": "bytes=5-"}),
    ("GET", {"Range": "bytes=999999999-"}),  # 416
    ("GET", {"Range": "bytes=3-8", "If-Range": '"another-version"'}),  # the whole file, 200
    ("HEAD", {"Range": "bytes=10-99"}),
]


def answers(http: httpx.Client) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    for method, headers in REQUESTS:
        r = http.request(method, URL, headers=headers)
        out.append((r.status_code, {k: v for k, v in r.headers.items() if k not in PER_RESPONSE}, r.content))
    return out


def test_a_hot_file_is_answered_exactly_as_a_rebuilt_one(hot: tuple[RunningService, bytes, str]) -> None:
    service, data, sha = hot
    service.hub.reads.hot.reads_to_keep = 10**9  # nothing kept while the rebuilt answers are taken
    rebuilt = answers(service.http)
    service.hub.reads.hot.reads_to_keep = 2
    make_hot(service, data, sha)
    frames_before = len(service.hub.reader.cache._entries)
    service.hub.reader.cache._entries.clear()
    from_copy = answers(service.http)
    assert from_copy == rebuilt
    assert [status for status, _, _ in rebuilt] == [200, 200, 206, 206, 206, 416, 200, 206]
    assert rebuilt[0][2] == data and rebuilt[2][2] == data[10:100]
    assert frames_before > 0 and len(service.hub.reader.cache._entries) == 0  # nothing was decoded


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_ranges_from_a_copy_are_byte_exact(hot: tuple[RunningService, bytes, str], data: st.DataObject) -> None:
    service, content, sha = hot
    if sha not in service.hub.reads.hot:
        make_hot(service, content, sha)
    start = data.draw(st.integers(0, len(content) - 1))
    last = data.draw(st.integers(start, len(content) + 100))
    r = service.http.get(URL, headers={"Range": f"bytes={start}-{last}"})
    assert r.status_code == 206
    assert r.content == content[start : last + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{min(last, len(content) - 1)}/{len(content)}"


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "deleted"])
def test_a_damaged_copy_falls_back_to_reconstruction_and_is_rewritten(
    hot: tuple[RunningService, bytes, str], damage: str
) -> None:
    service, data, sha = hot
    make_hot(service, data, sha)
    path = copy_path(service, sha)
    if damage == "truncated":
        os.truncate(path, len(data) // 2)
    elif damage == "overwritten":
        with open(path, "r+b") as f:
            f.seek(len(data) // 3)
            f.write(b"\0" * 64)
        later = path.stat().st_mtime_ns + 10**9
        os.utime(path, ns=(later, later))
    else:
        path.unlink()
    r = service.http.get(URL, headers={"Range": "bytes=0-"})
    assert r.status_code == 206 and r.content == data
    assert service.http.get(URL).content == data  # the fallback, kept again
    wait_until(lambda: sha in service.hub.reads.hot)
    assert path.read_bytes() == data
    assert service.http.get(URL, headers={"Range": "bytes=100-199"}).content == data[100:200]


def test_a_deleted_file_is_not_served_from_its_copy_and_gc_drops_the_copy(
    hot: tuple[RunningService, bytes, str],
) -> None:
    service, data, sha = hot
    make_hot(service, data, sha)
    path = copy_path(service, sha)
    assert path.exists()
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    old = service.http.head(URL).headers["X-Repo-Commit"]
    api.delete_file("model.safetensors", repo_id="alice/m")
    gone = service.http.get(URL)
    assert gone.status_code == 404 and gone.headers["X-Error-Code"] == "EntryNotFound"
    assert service.http.get(URL.replace("/main/", f"/{old}/")).content == data  # history still names it
    api.delete_repo("alice/m")
    for url in (URL, URL.replace("/main/", f"/{old}/")):
        gone = service.http.get(url, headers={"Range": "bytes=0-99"})
        assert gone.status_code == 404 and gone.headers["X-Error-Code"] == "RepoNotFound"
    service.hub.queue.wait(timeout=60)
    report = collect_garbage(service.hub, grace_seconds=0)
    assert report.files >= 1
    assert not path.exists() and sha not in service.hub.reads.hot


def test_git_lfs_downloads_fill_and_read_the_hot_copy(hot: tuple[RunningService, bytes, str]) -> None:
    """The LFS object route (what git-lfs fetches) counts whole downloads towards a copy as /resolve does,
    and serves the copy once it is kept: whole and by range, with the frames gone from the store."""
    service, data, sha = hot
    url = f"/alice/m.git/info/lfs/objects/{sha}"
    for _ in range(service.hub.settings.hot_cache_reads):
        assert sha not in service.hub.reads.hot
        assert service.http.get(url).content == data
    wait_until(lambda: sha in service.hub.reads.hot)
    store = service.hub.store
    for prefix in keys.ALL_PREFIXES:  # only the copy can answer now
        for info in list(store.list(prefix)):
            store.delete(info.key)
    service.hub.reader.cache._entries.clear()
    assert service.http.get(url).content == data
    r = service.http.get(url, headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
