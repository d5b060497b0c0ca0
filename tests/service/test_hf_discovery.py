"""Discovery with the unmodified client: list_models, list_datasets, list_user_repos, whoami, and the
`hf` CLI commands built on them (`hf models ls`, `hf datasets ls`, `hf repos ls`, `hf auth whoami`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from huggingface_hub import HfApi

from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService


def _populate(api: HfApi) -> None:
    for repo_id in ("alice/bert-tiny", "alice/gpt-small", "bob/bert-large", "carol/vision"):
        api.create_repo(repo_id)
    api.create_repo("alice/secret-bert", private=True)
    api.create_repo("alice/corpus", repo_type="dataset")
    api.create_repo("bob/bert-data", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"newest", path_in_repo="n.txt", repo_id="alice/gpt-small")


def test_list_models_filters_sorts_and_pages(make_service) -> None:  # type: ignore[no-untyped-def]
    service: RunningService = make_service(listing_page_size=2)
    api = HfApi(endpoint=service.url, token=WRITE_TOKEN)
    _populate(api)
    everything = [m.id for m in api.list_models()]  # 5 models, pages of 2: the client follows Link
    assert sorted(everything) == ["alice/bert-tiny", "alice/gpt-small", "alice/secret-bert", "bob/bert-large",
                                  "carol/vision"]
    assert {m.id for m in api.list_models(author="alice")} == {"alice/bert-tiny", "alice/gpt-small",
                                                                 "alice/secret-bert"}
    assert {m.id for m in api.list_models(search="BERT")} == {"alice/bert-tiny", "alice/secret-bert",
                                                                "bob/bert-large"}
    assert {m.id for m in api.list_models(search="bert", author="bob")} == {"bob/bert-large"}
    newest = list(api.list_models(sort="last_modified", limit=1))
    assert [m.id for m in newest] == ["alice/gpt-small"]
    assert len(list(api.list_models(limit=3))) == 3
    by_creation = [m.id for m in api.list_models(sort="created_at")]
    assert by_creation[0] == "alice/secret-bert" and by_creation[-1] == "alice/bert-tiny"

    # The fields model_info has, and the head of main.
    [tiny] = [m for m in api.list_models(author="alice", search="tiny", full=True)]
    assert tiny.sha == api.model_info("alice/bert-tiny").sha and tiny.private is False
    assert [s.rfilename for s in tiny.siblings] == [".gitattributes"]

    # Private repositories only with a token (readable_repo's rule); datasets are listed apart.
    anonymous = HfApi(endpoint=service.url, token=False)
    assert "alice/secret-bert" not in {m.id for m in anonymous.list_models()}
    reader = HfApi(endpoint=service.url, token=READ_TOKEN)
    assert "alice/secret-bert" in {m.id for m in reader.list_models()}
    assert {d.id for d in api.list_datasets()} == {"alice/corpus", "bob/bert-data"}
    assert {d.id for d in api.list_datasets(search="bert")} == {"bob/bert-data"}
    assert {d.id for d in api.list_datasets(author="alice")} == {"alice/corpus"}
    # One route over the two kinds deltahub stores; Spaces are not routed at all (404, as before).
    assert service.http.get("/api/spaces").status_code == 404


def test_whoami_and_the_callers_repositories(api: HfApi, service: RunningService) -> None:
    _populate(api)
    me = api.whoami()
    assert me["name"] == "alice" and me["type"] == "user" and me["orgs"] == []
    assert me["auth"]["accessToken"]["role"] == "write"
    mine = {(r.id, r.type, r.visibility) for r in api.list_user_repos()}
    assert mine == {
        ("alice/bert-tiny", "model", "public"),
        ("alice/gpt-small", "model", "public"),
        ("alice/secret-bert", "model", "private"),
        ("alice/corpus", "dataset", "public"),
    }
    sizes = {r.id: r.storage for r in api.list_user_repos()}
    assert sizes["alice/gpt-small"] == 1519 + len(b"newest")  # the .gitattributes and n.txt


def _hf(service: RunningService, tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "HF_ENDPOINT": service.url, "HF_TOKEN": WRITE_TOKEN, "HF_HOME": str(tmp_path / "cli-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_COLOR": "1", "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(["hf", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_hf_cli_lists_models_datasets_and_repos(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    _populate(api)
    models = json.loads(_hf(service, tmp_path, "models", "ls", "--author", "bob", "--json"))
    assert [m["id"] for m in models] == ["bob/bert-large"]
    found = json.loads(_hf(service, tmp_path, "models", "ls", "--search", "bert", "--json"))
    assert {m["id"] for m in found} == {"alice/bert-tiny", "alice/secret-bert", "bob/bert-large"}
    datasets = json.loads(_hf(service, tmp_path, "datasets", "ls", "--json"))
    assert {d["id"] for d in datasets} == {"alice/corpus", "bob/bert-data"}
    repos = json.loads(_hf(service, tmp_path, "repos", "ls", "--json"))
    assert {r["id"] for r in repos} == {"alice/bert-tiny", "alice/gpt-small", "alice/secret-bert", "alice/corpus"}
    assert "alice" in _hf(service, tmp_path, "auth", "whoami")
    tags = _hf(service, tmp_path, "repos", "tag", "create", "alice/bert-tiny", "v1")
    assert "v1" in tags
    assert [t.name for t in api.list_repo_refs("alice/bert-tiny").tags] == ["v1"]
    _hf(service, tmp_path, "repos", "branch", "create", "alice/bert-tiny", "dev")
    assert {b.name for b in api.list_repo_refs("alice/bert-tiny").branches} == {"main", "dev"}
