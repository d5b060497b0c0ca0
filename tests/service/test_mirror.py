"""The pull-through mirror end to end: a real deltahub upstream on 127.0.0.1, a proxy in front of it
that counts requests and can go away, cut or lie (tests/upstream_proxy.py), a second real deltahub
configured to mirror it, and the unmodified huggingface_hub client (Xet on, its default) downloading
through the mirror."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from storage.core.errors import RepoNotFound
from tests.mirror_fixtures import proxy, upstream
from tests.models import finetune, make_weights, to_safetensors
from tests.service.conftest import READ_TOKEN, TEST_OPTIONS, WRITE_TOKEN, RunningService, start_service
from tests.service.git_support import Git
from tests.service.xet_support import xet_client_env
from tests.upstream_proxy import UpstreamProxy

__all__ = ["proxy", "upstream", "xet_client_env"]  # a fixture, used by name

BASE = make_weights(7)
MODEL = to_safetensors(BASE)
FILES = {
    "model.safetensors": MODEL,
    "config.json": b'{"architectures": ["TinyModel"], "hidden_size": 64}\n',
    "docs/notes.txt": b"mirrored notes\n" * 40,
}
MirrorFactory = Callable[..., RunningService]


@pytest.fixture
def make_mirror(tmp_path: Path, proxy: UpstreamProxy) -> Iterator[MirrorFactory]:
    runners: list[Iterator[RunningService]] = []

    def make(**settings: object) -> RunningService:
        base: dict[str, object] = {"mirror_upstream": proxy.url, "mirror_upstream_token": WRITE_TOKEN,
                                   "mirror_resume_seconds": 20.0}
        runner = start_service(tmp_path / f"mirror{len(runners)}", TEST_OPTIONS, ingest=True,
                               settings={**base, **settings})
        runners.append(runner)
        return next(runner)

    yield make
    for runner in runners:
        next(runner, None)


def push(upstream: RunningService, repo_id: str, files: dict[str, bytes], *, private: bool = False) -> str:
    """Upload through the real client (Xet) to the upstream; the upstream's new head commit."""
    api = HfApi(endpoint=upstream.url, token=WRITE_TOKEN)
    api.create_repo(repo_id, private=private, exist_ok=True)
    for path, data in files.items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo_id)
    return api.model_info(repo_id).sha or ""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def revision(mirror: RunningService, repo_id: str, rev: str = "main", token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return mirror.http.get(f"/api/models/{repo_id}/revision/{rev}", headers=headers)


def pulled(local: str) -> dict[str, bytes]:
    root = Path(local)
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts}


def test_the_client_downloads_through_the_mirror_byte_exact_then_locally(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    commit = push(upstream, "alice/tiny", FILES)
    mirror = make_mirror()
    local = snapshot_download("alice/tiny", endpoint=mirror.url, local_dir=tmp_path / "first")
    got = pulled(local)
    got.pop(".gitattributes")
    assert got == FILES
    # The upstream's commit id is the mirror's, and the mirror says what it did.
    assert HfApi(endpoint=mirror.url).model_info("alice/tiny").sha == commit
    assert revision(mirror, "alice/tiny").headers["X-Deltahub-Mirror"] == "hit"
    assert len(proxy.downloads("model.safetensors")) == 1
    # Mirrored files go through the normal ingest: stored, deduplicated, like a push.
    mirror.hub.queue.wait(timeout=60)  # type: ignore[union-attr]
    assert mirror.hub.file_info(sha256(MODEL)).state == "stored"
    # The upstream gone: what is held is served, byte-exact.
    proxy.stop()
    again = snapshot_download("alice/tiny", endpoint=mirror.url, local_dir=tmp_path / "second",
                              cache_dir=tmp_path / "cache2")
    assert pulled(again)["model.safetensors"] == MODEL
    one = hf_hub_download("alice/tiny", "docs/notes.txt", endpoint=mirror.url, cache_dir=tmp_path / "cache3")
    assert Path(one).read_bytes() == FILES["docs/notes.txt"]


def test_a_fine_tune_mirrored_after_its_base_is_delta_coded(
    upstream: RunningService, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    push(upstream, "alice/base", {"model.safetensors": MODEL})
    tuned = to_safetensors(finetune(BASE, 1))
    push(upstream, "alice/tuned", {"model.safetensors": tuned})
    mirror = make_mirror()
    for repo in ("alice/base", "alice/tuned"):
        hf_hub_download(repo, "model.safetensors", endpoint=mirror.url, cache_dir=tmp_path / "c")
        mirror.hub.queue.wait(timeout=60)  # type: ignore[union-attr]
    savings = mirror.http.get("/api/v1/stats").json()["storage"]["savings"]
    assert savings["delta_coding"] > 0


def test_a_branch_is_re_resolved_after_the_ttl_and_served_stale_when_the_upstream_is_down(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    first = push(upstream, "alice/moving", {"a.txt": b"one\n"})
    HfApi(endpoint=upstream.url, token=WRITE_TOKEN).create_tag("alice/moving", tag="v1")
    mirror = make_mirror(mirror_branch_ttl_seconds=1.0)
    answer = revision(mirror, "alice/moving")
    assert answer.json()["sha"] == first and answer.headers["X-Deltahub-Mirror"] == "fetched"
    second = push(upstream, "alice/moving", {"a.txt": b"two\n"})
    assert revision(mirror, "alice/moving").json()["sha"] == first  # within the TTL
    time.sleep(1.2)
    answer = revision(mirror, "alice/moving")
    assert answer.json()["sha"] == second and answer.headers["X-Deltahub-Mirror"] == "refreshed"
    fresh = hf_hub_download("alice/moving", "a.txt", endpoint=mirror.url, cache_dir=tmp_path / "c")
    assert Path(fresh).read_bytes() == b"two\n"
    # A tag and a commit id are fetched once and never looked up again.
    assert revision(mirror, "alice/moving", "v1").json()["sha"] == first
    assert revision(mirror, "alice/moving", first).json()["sha"] == first
    looked = len(proxy.requests_for("/revision/"))
    time.sleep(1.2)
    proxy.stop()
    answer = revision(mirror, "alice/moving")
    assert answer.status_code == 200 and answer.headers["X-Deltahub-Mirror"] == "stale"
    assert answer.json()["sha"] == second
    down = mirror.http.get("/alice/moving/resolve/main/a.txt")
    assert down.content == b"two\n" and down.headers["X-Deltahub-Mirror"] == "stale"
    for rev in ("v1", first):
        assert revision(mirror, "alice/moving", rev).headers["X-Deltahub-Mirror"] == "hit"
    assert len(proxy.requests_for("/revision/")) == looked
    # Nothing held and nobody to ask: a clear 502.
    missing = revision(mirror, "alice/never-seen")
    assert missing.status_code == 502 and "unreachable" in missing.json()["error"]


def test_a_transfer_broken_mid_body_resumes_with_a_range(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    push(upstream, "alice/tiny", FILES)
    mirror = make_mirror()
    proxy.behaviour.cut_path, proxy.behaviour.cut_after, proxy.behaviour.down_for = "model.safetensors", 100_000, 1.0
    got = hf_hub_download("alice/tiny", "model.safetensors", endpoint=mirror.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == MODEL
    ranges = [seen.range for seen in proxy.downloads("model.safetensors")]
    assert ranges[0] is None and "bytes=100000-" in ranges


def test_concurrent_first_requests_fetch_each_file_once(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    push(upstream, "alice/tiny", FILES)
    mirror = make_mirror()
    proxy.behaviour.slow = 0.5
    results: list[bytes] = []
    errors: list[BaseException] = []

    def download(n: int) -> None:
        try:
            path = hf_hub_download("alice/tiny", "model.safetensors", endpoint=mirror.url,
                                   cache_dir=tmp_path / f"c{n}")
            results.append(Path(path).read_bytes())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=download, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and results == [MODEL] * 4
    assert len(proxy.downloads("model.safetensors")) == 1


def test_a_lying_upstream_is_a_502_and_nothing_is_stored(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory
) -> None:
    push(upstream, "alice/tiny", FILES)
    mirror = make_mirror()
    proxy.behaviour.lie = True
    answer = mirror.http.get("/alice/tiny/resolve/main/model.safetensors")
    assert answer.status_code == 502
    # Every file lies; whichever is checked first names itself and the hash it failed: the LFS oid of an
    # LFS file, the git blob id of one the upstream lists as a regular file (.gitattributes).
    error = answer.json()["error"]
    assert "do not match" in error
    assert ("model.safetensors" in error and "the upstream's LFS oid is" in error) or (
        ".gitattributes: bytes hash to git blob" in error), error
    with pytest.raises(RepoNotFound):
        mirror.hub.get_repo("alice/tiny")
    assert not mirror.hub.has_file(sha256(MODEL))
    proxy.behaviour.lie = False
    assert mirror.http.get("/alice/tiny/resolve/main/model.safetensors").content == MODEL


def test_allow_and_deny_lists_choose_what_is_mirrored(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory
) -> None:
    for repo in ("alice/open", "alice/secret-plans", "carol/thing"):
        push(upstream, repo, {"a.txt": repo.encode()})
    mirror = make_mirror(mirror_allow="alice/*", mirror_deny="alice/secret-*")
    assert revision(mirror, "alice/open").status_code == 200
    for repo in ("alice/secret-plans", "carol/thing"):
        answer = revision(mirror, repo)
        assert answer.status_code == 404 and answer.headers["X-Error-Code"] == "RepoNotFound"
        assert "X-Deltahub-Mirror" not in answer.headers
        assert not proxy.requests_for(repo)


def test_a_private_upstream_repo_is_mirrored_only_for_callers_who_may_read_it(
    upstream: RunningService, proxy: UpstreamProxy, make_mirror: MirrorFactory
) -> None:
    push(upstream, "alice/hidden", {"a.txt": b"secret\n"}, private=True)
    mirror = make_mirror()
    anonymous = revision(mirror, "alice/hidden")
    assert anonymous.status_code == 404 and anonymous.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RepoNotFound):
        mirror.hub.get_repo("alice/hidden")
    assert revision(mirror, "alice/hidden", token=READ_TOKEN).status_code == 200
    assert mirror.hub.get_repo("alice/hidden").private
    assert revision(mirror, "alice/hidden").status_code == 404
    # Without a token the upstream shows the private repository to nobody, so the mirror cannot either.
    tokenless = make_mirror(mirror_upstream_token=None)
    assert revision(tokenless, "alice/hidden", token=READ_TOKEN).status_code == 404


def test_a_mirrored_repository_is_read_only_but_may_be_deleted_and_fetched_again(
    upstream: RunningService, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    commit = push(upstream, "alice/held", FILES)
    mirror = make_mirror()
    hf_hub_download("alice/held", "config.json", endpoint=mirror.url, cache_dir=tmp_path / "c")
    api = HfApi(endpoint=mirror.url, token=WRITE_TOKEN)  # alice, who may write her own namespace
    refusal = f"'alice/held' is a mirror of {mirror.hub.settings.mirror_upstream}: it is read-only here"
    writes: list[Callable[[], object]] = [
        lambda: api.upload_file(path_or_fileobj=b"local\n", path_in_repo="local.txt", repo_id="alice/held"),
        lambda: api.create_branch("alice/held", branch="local"),
        lambda: api.create_tag("alice/held", tag="local"),
        lambda: api.update_repo_settings("alice/held", private=True),
        lambda: api.move_repo("alice/held", "alice/moved"),
    ]
    for write in writes:
        with pytest.raises(HfHubHTTPError) as refused:
            write()
        assert refused.value.response.status_code == 403 and refusal in refused.value.response.text
    # git push too (a mirrored commit is not served to git clone: the upstream sends no commit objects).
    git, work = Git(tmp_path / "home", mirror.url, WRITE_TOKEN), tmp_path / "work"
    work.mkdir()
    git.run("init", "-b", "main", cwd=work)
    (work / "local.txt").write_text("local\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-m", "local", cwd=work)
    pushed = git.run("push", f"{mirror.url}/alice/held", "main", cwd=work, check=False)
    assert pushed.returncode != 0 and "returned error: 403" in pushed.stderr  # git shows no body here
    assert api.model_info("alice/held").sha == commit  # nothing written
    # Deleting the copy is allowed (an operator evicting it); the next request fetches it again.
    api.delete_repo("alice/held")
    again = hf_hub_download("alice/held", "config.json", endpoint=mirror.url, cache_dir=tmp_path / "c2")
    assert Path(again).read_bytes() == FILES["config.json"]
    assert api.model_info("alice/held").sha == commit
