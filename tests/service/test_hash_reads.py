"""A file's SHA-256 is not possession (issue 12): the exploit of committing another tenant's private file by
its hash and size is refused, the by-hash routes answer as for a file never uploaded, and uploading the
bytes oneself, or reading a public repository that names them, still works, with one stored copy."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import EntryNotFoundError

from service.auth import StaticTokenStore, TokenInfo
from tests.service.conftest import TEST_OPTIONS, RunningService, start_service

ADA, BEN, ROOT = "dh-ada", "dh-ben", "dh-root"
TOKENS = StaticTokenStore({
    ADA: TokenInfo("ada", True, token_name="ada"),
    BEN: TokenInfo("ben", True, token_name="ben"),
    ROOT: TokenInfo("root", True, hub_admin=True, token_name="root"),
})
SECRET = os.urandom(50_000)  # LFS-sized (TEST_OPTIONS inline files up to 4096 bytes)
SHA = hashlib.sha256(SECRET).hexdigest()


@pytest.fixture
def hub_service(tmp_path: Path, hf_client_env: Path) -> Iterator[RunningService]:
    yield from start_service(tmp_path, TEST_OPTIONS, tokens=TOKENS)


def client(service: RunningService, token: str) -> huggingface_hub.HfApi:
    return huggingface_hub.HfApi(endpoint=service.url, token=token)


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def commit_by_hash(service: RunningService, token: str, repo_id: str, sha256: str, size: int) -> httpx.Response:
    """The exploit: a commit naming a file by its hash and size only (no client sends this without the
    bytes, so it is made by hand)."""
    lines = [
        {"key": "header", "value": {"summary": "by hash", "description": ""}},
        {"key": "lfsFile", "value": {"path": "taken.bin", "algo": "sha256", "oid": sha256, "size": size}},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    return service.http.post(
        f"/api/models/{repo_id}/commit/main", content=body,
        headers={**auth(token), "content-type": "application/x-ndjson"},
    )


def batch(service: RunningService, token: str, repo_id: str, sha256: str, size: int) -> dict[str, object]:
    answer = service.http.post(
        f"/{repo_id}.git/info/lfs/objects/batch", headers=auth(token),
        json={"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha256, "size": size}]},
    )
    assert answer.status_code == 200, answer.text
    objects = answer.json()["objects"]
    assert isinstance(objects, list)
    return dict(objects[0])


def physical_bytes(service: RunningService) -> int:
    return sum(info.size for info in service.hub.store.list())


def private_secret(service: RunningService) -> None:
    ada = client(service, ADA)
    ada.create_repo("ada/secret", private=True)
    ada.upload_file(path_or_fileobj=SECRET, path_in_repo="weights.bin", repo_id="ada/secret")
    client(service, BEN).create_repo("ben/mine")


def test_committing_a_private_file_by_its_hash_is_refused_like_a_file_never_uploaded(
    hub_service: RunningService,
) -> None:
    private_secret(hub_service)
    unknown = hashlib.sha256(b"never uploaded").hexdigest()

    taken = commit_by_hash(hub_service, BEN, "ben/mine", SHA, len(SECRET))
    never = commit_by_hash(hub_service, BEN, "ben/mine", unknown, len(SECRET))
    assert taken.status_code == never.status_code == 404
    assert taken.json()["error"].replace(SHA, "?") == never.json()["error"].replace(unknown, "?")
    # A wrong size is not checked first: it would tell that the hub holds the file.
    assert commit_by_hash(hub_service, BEN, "ben/mine", SHA, 1).status_code == 404
    with pytest.raises(EntryNotFoundError):
        client(hub_service, BEN).hf_hub_download("ben/mine", "taken.bin")

    # The by-hash routes answer ben as for a hash never uploaded, and ada (who reads the repository) fully.
    for sha in (SHA, unknown):
        assert hub_service.http.get(f"/api/v1/files/{sha}", headers=auth(BEN)).status_code == 404
        verify = hub_service.http.post("/api/v1/lfs/verify", headers=auth(BEN), json={"oid": sha, "size": 1})
        assert verify.status_code == 404
    assert hub_service.http.get(f"/api/v1/files/{SHA}", headers=auth(ADA)).json()["size"] == len(SECRET)
    assert hub_service.http.get(f"/api/v1/files/{SHA}", headers=auth(ROOT)).status_code == 200
    # The LFS batch asks ben for the bytes, as for any object the hub does not hold; ada is told "held".
    assert "upload" in batch(hub_service, BEN, "ben/mine", SHA, len(SECRET))["actions"]  # type: ignore[operator]
    assert "actions" not in batch(hub_service, ADA, "ada/secret", SHA, len(SECRET))


def test_a_hub_administrator_may_commit_any_held_file(hub_service: RunningService) -> None:
    private_secret(hub_service)
    client(hub_service, ROOT).create_repo("root/copy")
    assert commit_by_hash(hub_service, ROOT, "root/copy", SHA, len(SECRET)).status_code == 200


def test_a_put_of_other_bytes_under_a_held_oid_is_refused_and_grants_nothing(hub_service: RunningService) -> None:
    private_secret(hub_service)
    href = batch(hub_service, BEN, "ben/mine", SHA, len(SECRET))["actions"]["upload"]["href"]  # type: ignore[index]
    forged = bytes(len(SECRET))
    assert httpx.put(href, content=forged).status_code == 400  # hashed though the hub holds the oid
    assert commit_by_hash(hub_service, BEN, "ben/mine", SHA, len(SECRET)).status_code == 404


def test_the_signed_repository_cannot_be_changed_in_the_upload_url(hub_service: RunningService) -> None:
    private_secret(hub_service)
    href = batch(hub_service, BEN, "ben/mine", SHA, len(SECRET))["actions"]["upload"]["href"]  # type: ignore[index]
    assert "repo=model%3Aben%2Fmine" in href
    moved = href.replace("repo=model%3Aben%2Fmine", "repo=model%3Aada%2Fsecret")
    assert httpx.put(moved, content=SECRET).status_code == 403


def test_uploading_the_bytes_oneself_works_and_stores_them_once(
    hub_service: RunningService, transport: str
) -> None:
    private_secret(hub_service)
    before = physical_bytes(hub_service)
    ben = client(hub_service, BEN)
    ben.upload_file(path_or_fileobj=SECRET, path_in_repo="mine.bin", repo_id="ben/mine")
    assert Path(ben.hf_hub_download("ben/mine", "mine.bin")).read_bytes() == SECRET
    # The upload was checked against the hash and dropped: the hub keeps its one copy.
    assert physical_bytes(hub_service) == before
    # Having uploaded it for a repository ben writes, ben may name the file in another of his.
    ben.create_repo("ben/other")
    assert commit_by_hash(hub_service, BEN, "ben/other", SHA, len(SECRET)).status_code == 200


def test_a_public_repositorys_file_may_be_named_by_anyone_who_reads_it(hub_service: RunningService) -> None:
    ada, ben = client(hub_service, ADA), client(hub_service, BEN)
    ada.create_repo("ada/open")
    ada.upload_file(path_or_fileobj=SECRET, path_in_repo="weights.bin", repo_id="ada/open")
    ben.create_repo("ben/mine")
    assert "actions" not in batch(hub_service, BEN, "ben/mine", SHA, len(SECRET))
    assert commit_by_hash(hub_service, BEN, "ben/mine", SHA, len(SECRET)).status_code == 200
    assert Path(ben.hf_hub_download("ben/mine", "taken.bin")).read_bytes() == SECRET
    # Once ada's repository turns private, its file is hers again (ben's own copy now names it for ben).
    ada.update_repo_settings("ada/open", private=True)
    ben.create_repo("ben/late")
    assert commit_by_hash(hub_service, BEN, "ben/late", SHA, len(SECRET)).status_code == 200
    ben.delete_repo("ben/mine")
    assert commit_by_hash(hub_service, BEN, "ben/late", SHA, len(SECRET)).status_code == 200  # ben/late names it
    ben.create_repo("ben/mine")
    ben.delete_repo("ben/late")
    assert commit_by_hash(hub_service, BEN, "ben/mine", SHA, len(SECRET)).status_code == 404


def test_a_git_push_of_a_pointer_to_a_private_file_is_refused_like_a_file_never_uploaded(
    hub_service: RunningService, tmp_path: Path
) -> None:
    """The same exploit through git: an LFS pointer blob names the file by hash and size, and git-lfs is
    told not to upload (GIT_LFS_SKIP_PUSH); the pointer proves nothing."""
    from tests.service.git_support import Git

    private_secret(hub_service)
    ben = client(hub_service, BEN)
    ben.upload_file(path_or_fileobj=b"{}\n", path_in_repo="config.json", repo_id="ben/mine")
    git = Git(tmp_path / "home", hub_service.url, BEN)
    git.run("clone", f"{hub_service.url}/ben/mine", "work", cwd=tmp_path)
    work = tmp_path / "work"
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{SHA}\nsize {len(SECRET)}\n"
    (work / "taken.bin").write_text(pointer)
    (work / ".gitattributes").write_text("")  # a plain blob holding the pointer text, not a git-lfs file
    git.run("add", ".", cwd=work)
    git.run("commit", "-qm", "by hash", cwd=work)
    refused = git.run("push", "origin", "main", cwd=work, check=False, env={"GIT_LFS_SKIP_PUSH": "1"})
    assert refused.returncode != 0
    assert f"the LFS object of 'taken.bin' ({SHA}) was not uploaded" in refused.stderr
    with pytest.raises(EntryNotFoundError):
        ben.hf_hub_download("ben/mine", "taken.bin", local_dir=tmp_path / "got")
