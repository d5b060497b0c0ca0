"""Repository lifecycle with the unmodified huggingface_hub client: the initial commit, branches, tags,
revision rules of commits, deletions of missing paths, renames and expanded trees."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from storage.app.gitattributes import DATASET_GITATTRIBUTES, MODEL_GITATTRIBUTES
from tests.service.conftest import WRITE_TOKEN, RunningService

REPO = "alice/lifecycle"


def test_a_new_repository_has_main_with_the_hubs_gitattributes(
    api: HfApi, service: RunningService, tmp_path: Path
) -> None:
    api.create_repo(REPO)
    refs = api.list_repo_refs(REPO)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []
    [initial] = api.list_repo_commits(REPO)
    assert initial.title == "initial commit" and refs.branches[0].target_commit == initial.commit_id
    assert api.list_repo_files(REPO) == [".gitattributes"]
    got = hf_hub_download(REPO, ".gitattributes", endpoint=service.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == MODEL_GITATTRIBUTES and len(MODEL_GITATTRIBUTES) == 1519
    # A missing model card is an EntryNotFound at a real revision (what push_to_hub relies on).
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "README.md", endpoint=service.url, cache_dir=tmp_path / "c")
    # Stored through the upload path: a held file like any other, shared by every repository.
    # git holds it as a blob of its bytes, as on the Hub: listed with that blob's id and no `lfs`.
    [sibling] = api.model_info(REPO, files_metadata=True).siblings
    assert sibling.lfs is None
    assert sibling.blob_id == hashlib.sha1(b"blob 1519\x00" + MODEL_GITATTRIBUTES, usedforsecurity=False).hexdigest()
    assert service.hub.has_file(hashlib.sha256(MODEL_GITATTRIBUTES).hexdigest())
    api.create_repo("alice/data", repo_type="dataset")
    assert api.list_repo_files("alice/data", repo_type="dataset") == [".gitattributes"]
    got = hf_hub_download("alice/data", ".gitattributes", repo_type="dataset", endpoint=service.url,
                          cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == DATASET_GITATTRIBUTES


def test_branches_from_any_revision_and_conflicts(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id=REPO)
    api.create_branch(REPO, branch="dev")  # from main's head
    api.create_branch(REPO, branch="old", revision=first.oid)
    heads = {b.name: b.target_commit for b in api.list_repo_refs(REPO).branches}
    assert heads["dev"] == heads["main"] and heads["old"] == first.oid
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(REPO, branch="dev")
    assert err.value.response.status_code == 409
    api.create_branch(REPO, branch="dev", exist_ok=True)
    with pytest.raises(RevisionNotFoundError):
        api.create_branch(REPO, branch="nowhere", revision="no-such-branch")
    api.delete_branch(REPO, branch="old")
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main", "dev"}
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_branch(REPO, branch="old")
    assert err.value.response.status_code == 404


def test_tags_pin_a_revision_everywhere(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="w.txt", repo_id=REPO)
    api.create_tag(REPO, tag="v1.0", tag_message="first release")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="w.txt", repo_id=REPO)
    api.upload_file(path_or_fileobj=b"new", path_in_repo="late.txt", repo_id=REPO)
    [tag] = api.list_repo_refs(REPO).tags
    assert (tag.name, tag.ref, tag.target_commit) == ("v1.0", "refs/tags/v1.0", v1.oid)

    cache = tmp_path / "cache"
    assert Path(hf_hub_download(REPO, "w.txt", revision="v1.0", endpoint=service.url, cache_dir=cache)).read_bytes() \
        == b"v1"
    assert Path(hf_hub_download(REPO, "w.txt", endpoint=service.url, cache_dir=cache)).read_bytes() == b"v2"
    assert api.model_info(REPO, revision="v1.0").sha == v1.oid
    assert set(api.list_repo_files(REPO, revision="v1.0")) == {".gitattributes", "w.txt"}
    assert [p.path for p in api.get_paths_info(REPO, ["late.txt", "w.txt"], revision="v1.0")] == ["w.txt"]
    assert api.list_repo_commits(REPO, revision="v1.0")[0].commit_id == v1.oid

    # Tags never move: a commit to a tag is refused; a tag may be made on another revision by id.
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="w.txt", repo_id=REPO, revision="v1.0")
    assert err.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v1.0")
    assert err.value.response.status_code == 409
    api.create_tag(REPO, tag="v1.0", exist_ok=True)
    api.delete_tag(REPO, tag="v1.0")
    assert api.list_repo_refs(REPO).tags == []
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="v1.0")


def test_commit_to_a_missing_branch_is_revision_not_found(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, revision="typo")
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="m", revision="typo")
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main"}


def test_deleting_a_missing_path_is_entry_not_found(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="dir/x.txt", repo_id=REPO)
    before = len(api.list_repo_commits(REPO))
    with pytest.raises(EntryNotFoundError):
        api.delete_file("nope.txt", repo_id=REPO)
    with pytest.raises(EntryNotFoundError):
        api.delete_folder("nodir", repo_id=REPO)
    assert len(api.list_repo_commits(REPO)) == before  # no empty commit
    api.delete_folder("dir", repo_id=REPO)
    assert api.list_repo_files(REPO) == [".gitattributes"]


def test_move_repo_renames_with_history(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    api.create_repo(REPO)
    commit = api.upload_file(path_or_fileobj=b"kept", path_in_repo="k.txt", repo_id=REPO)
    api.create_repo("alice/taken")
    with pytest.raises(HfHubHTTPError) as err:
        api.move_repo(REPO, "alice/taken")
    assert err.value.response.status_code == 409
    api.move_repo(REPO, "bob/renamed")
    assert api.model_info("bob/renamed").sha == commit.oid
    got = hf_hub_download("bob/renamed", "k.txt", endpoint=service.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == b"kept"


def test_the_old_name_redirects_to_the_moved_repository(
    api: HfApi, service: RunningService, tmp_path: Path
) -> None:
    """As on the Hub: every route naming the old id answers 307 to the new one, and the client follows."""
    weights = os.urandom(300_000)  # an LFS-sized file: it travels by Xet (or LFS) and resolves by sha256
    api.create_repo(REPO)
    api.create_commit(REPO, [CommitOperationAdd("w.bin", weights), CommitOperationAdd("k.txt", b"kept")],
                      commit_message="files")
    api.create_tag(REPO, tag="v1")
    api.move_repo(REPO, "bob/renamed")
    info = api.model_info(REPO, files_metadata=True)
    assert info.id == "bob/renamed" and {s.rfilename for s in info.siblings} == {".gitattributes", "w.bin", "k.txt"}
    raw = service.http.get(f"/api/models/{REPO}/revision/main?expand=sha")
    assert raw.status_code == 307 and raw.headers["location"] == "/api/models/bob/renamed/revision/main?expand=sha"
    lfs = service.http.post(f"/{REPO}.git/info/lfs/objects/batch", json={"operation": "upload", "objects": []},
                            headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
    assert lfs.headers["location"] == "/bob/renamed.git/info/lfs/objects/batch"
    got = hf_hub_download(REPO, "w.bin", revision="v1", endpoint=service.url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == weights
    snap = Path(snapshot_download(REPO, endpoint=service.url, cache_dir=tmp_path / "s"))
    assert (snap / "w.bin").read_bytes() == weights and (snap / "k.txt").read_bytes() == b"kept"
    assert [t.name for t in api.list_repo_refs(REPO).tags] == ["v1"]
    assert sorted(f.path for f in api.list_repo_tree(REPO)) == [".gitattributes", "k.txt", "w.bin"]
    # Writes follow too (307 keeps the method and body): the commit lands in the moved repository.
    api.upload_file(path_or_fileobj=os.urandom(200_000), path_in_repo="late.bin", repo_id=REPO)
    assert "late.bin" in api.list_repo_files("bob/renamed")
    # A second move redirects both older names; a repository created under the old name takes it back.
    api.move_repo("bob/renamed", "carol/final")
    assert api.model_info(REPO).id == api.model_info("bob/renamed").id == "carol/final"
    api.create_repo(REPO)
    assert api.model_info(REPO).id == REPO and api.list_repo_files(REPO) == [".gitattributes"]
    assert api.model_info("bob/renamed").id == "carol/final"
    # Deleting the repository ends its redirects.
    api.delete_repo("carol/final")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("bob/renamed")


def test_redirects_keep_the_repository_type_and_privacy(api: HfApi, service: RunningService) -> None:
    api.create_repo("alice/data", repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"x,y\n", path_in_repo="d.csv", repo_id="alice/data", repo_type="dataset")
    api.create_repo("alice/data")  # a model of the same name is another repository
    api.move_repo("alice/data", "alice/data2", repo_type="dataset")
    assert api.dataset_info("alice/data").id == "alice/data2"
    assert api.model_info("alice/data").id == "alice/data"
    # Anonymous callers cannot read the private dataset: its old name is simply not found.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=service.url, token=False).dataset_info("alice/data")
    assert service.http.get("/api/datasets/alice/data").status_code == 404


def test_expanded_tree_names_the_last_commit_of_each_entry(api: HfApi, service: RunningService) -> None:
    api.create_repo(REPO)
    first = api.create_commit(
        REPO, [CommitOperationAdd("a.txt", b"a"), CommitOperationAdd("d/b.txt", b"b")], commit_message="one\n\nbody"
    )
    second = api.upload_file(path_or_fileobj=b"c", path_in_repo="d/c.txt", repo_id=REPO, commit_message="two")
    api.upload_file(path_or_fileobj=b"a2", path_in_repo="a.txt", repo_id=REPO, commit_message="three")
    api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=REPO, commit_message="revert")
    history = {c.title: c.commit_id for c in api.list_repo_commits(REPO)}
    tree = {t.path: t for t in api.list_repo_tree(REPO, recursive=True, expand=True)}
    last = {path: (t.last_commit.oid, t.last_commit.title) for path, t in tree.items() if t.last_commit}
    assert last == {
        ".gitattributes": (history["initial commit"], "initial commit"),
        # Reverted content is a change: the newest commit that changed the path, not the oldest holding it.
        "a.txt": (history["revert"], "revert"),
        "d/b.txt": (first.oid, "one"),
        "d/c.txt": (second.oid, "two"),
        "d": (second.oid, "two"),  # a directory: the newest change under it
    }
    assert all(t.last_commit.date is not None for t in tree.values() if t.last_commit)
    # Page size 3: the expanded listing pages like the plain one.
    assert len(tree) == 5


def test_dataset_repositories_do_everything_models_do(api: HfApi, service: RunningService, tmp_path: Path) -> None:
    name = "alice/shared-name"
    api.create_repo(name)
    api.create_repo(name, repo_type="dataset")  # a model and a dataset may share a name
    big = os.urandom(64 * 1024)  # LFS-sized: through LFS with the shared fixture (conftest); Xet has its own tests
    api.upload_file(path_or_fileobj=big, path_in_repo="data/train.bin", repo_id=name, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/small.csv", repo_id=name, repo_type="dataset")
    assert api.list_repo_files(name) == [".gitattributes"]
    assert set(api.list_repo_files(name, repo_type="dataset")) == {".gitattributes", "data/train.bin", "data/small.csv"}

    info = api.dataset_info(name)
    assert info.id == name and {s.rfilename for s in info.siblings} >= {"data/train.bin"}
    api.create_tag(name, tag="v1", repo_type="dataset")
    api.create_branch(name, branch="dev", repo_type="dataset")
    refs = api.list_repo_refs(name, repo_type="dataset")
    assert {b.name for b in refs.branches} == {"main", "dev"} and [t.name for t in refs.tags] == ["v1"]
    got = hf_hub_download(name, "data/train.bin", repo_type="dataset", revision="v1", endpoint=service.url,
                          cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == big
    api.update_repo_settings(name, private=True, repo_type="dataset")
    assert api.dataset_info(name).private and not api.model_info(name).private
    api.delete_file("data/small.csv", repo_id=name, repo_type="dataset")
    api.delete_repo(name, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(name)
    assert api.model_info(name).id == name


def test_spaces_are_refused_with_a_clear_message(api: HfApi, service: RunningService) -> None:
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("alice/app", repo_type="space", space_sdk="gradio")
    assert err.value.response.status_code == 501
    assert "Spaces" in err.value.response.headers["x-error-message"]
    with pytest.raises(HfHubHTTPError) as err:
        api.space_info("alice/app")
    assert err.value.response.status_code == 501
