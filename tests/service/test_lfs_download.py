"""The LFS batch API's download operation and the object route it points at (service/routes/lfs.py):
same read rule as /resolve, only objects the repository's commits name, byte ranges."""

from __future__ import annotations

import base64
import hashlib
import os

import huggingface_hub
import pytest

from tests.service.conftest import READ_TOKEN, WRITE_TOKEN, RunningService

pytestmark = pytest.mark.usefixtures("lfs_client")
DATA = os.urandom(30_000)
SHA = hashlib.sha256(DATA).hexdigest()
LFS_JSON = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}


def _batch(service: RunningService, repo_id: str, oid: str, size: int, auth: str | None = None) -> object:
    headers = {**LFS_JSON, **({"Authorization": auth} if auth else {})}
    body = {"operation": "download", "objects": [{"oid": oid, "size": size}]}
    return service.http.post(f"/{repo_id}.git/info/lfs/objects/batch", json=body, headers=headers)


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{token}".encode()).decode()


def test_download_answers_an_href_that_serves_the_file_with_ranges(
    api: huggingface_hub.HfApi, service: RunningService
) -> None:
    api.create_repo("alice/lfs")
    api.upload_file(path_or_fileobj=DATA, path_in_repo="w.bin", repo_id="alice/lfs")
    answer = _batch(service, "alice/lfs", SHA, len(DATA), _basic(WRITE_TOKEN))
    assert answer.status_code == 200
    (obj,) = answer.json()["objects"]
    action = obj["actions"]["download"]
    assert obj["size"] == len(DATA) and action["header"] == {"Authorization": _basic(WRITE_TOKEN)}
    whole = service.http.get(action["href"], headers=action["header"])
    assert whole.status_code == 200 and whole.content == DATA
    part = service.http.get(action["href"], headers={**action["header"], "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    assert service.http.get(action["href"], headers={"Range": "bytes=99999-"}).status_code == 416


def test_only_objects_the_repository_names_are_served(api: huggingface_hub.HfApi, service: RunningService) -> None:
    api.create_repo("alice/holder")
    api.upload_file(path_or_fileobj=DATA, path_in_repo="w.bin", repo_id="alice/holder")
    api.create_repo("alice/other")
    (obj,) = _batch(service, "alice/other", SHA, len(DATA)).json()["objects"]
    assert obj["error"] == {"code": 404, "message": f"{SHA} is not a file of alice/other"}
    assert service.http.get(f"/alice/other.git/info/lfs/objects/{SHA}").status_code == 404
    (bad,) = _batch(service, "alice/holder", "nothex", 1).json()["objects"]
    assert bad["error"]["code"] == 422


def test_a_private_repository_answers_as_a_missing_one(api: huggingface_hub.HfApi, service: RunningService) -> None:
    api.create_repo("alice/hidden", private=True)
    api.upload_file(path_or_fileobj=DATA, path_in_repo="w.bin", repo_id="alice/hidden")
    hidden, missing = _batch(service, "alice/hidden", SHA, len(DATA)), _batch(service, "alice/none", SHA, len(DATA))
    assert hidden.status_code == missing.status_code == 401  # challenged: git-lfs then asks for credentials
    assert hidden.headers["lfs-authenticate"] == missing.headers["lfs-authenticate"]
    assert hidden.json() == missing.json()
    assert service.http.get(f"/alice/hidden.git/info/lfs/objects/{SHA}").status_code == 404
    assert _batch(service, "alice/hidden", SHA, len(DATA), _basic(READ_TOKEN)).status_code == 200
