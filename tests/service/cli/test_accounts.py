"""`deltahub admin user | org | quota | token` against a running API server over the same catalog (SQLite,
then PostgreSQL): what the CLI writes is what the HTTP API enforces, seen through the real
huggingface_hub client."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from service.cli import cli
from service.cli.accounts import parse_bytes
from tests.service.conftest import TEST_OPTIONS, RunningService, start_service


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no DELTAHUB_* from the developer's shell."""
    for key in [k for k in os.environ if k.startswith("DELTAHUB_")]:
        monkeypatch.delenv(key)


class Deployment:
    """A served hub and the CLI pointed at its catalog and store (as an operator's shell would be)."""

    def __init__(self, service: RunningService, data_dir: Path, database_url: str) -> None:
        self.service, self.url = service, service.url
        self._args, self._env = ["--data-dir", str(data_dir)], {"DELTAHUB_DATABASE_URL": database_url}

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["admin", *args, *self._args], env=self._env, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def token(self, *args: str) -> str:
        """`admin token create ARGS`: the token, the last line of the output."""
        return self.ok("token", "create", *args).strip().splitlines()[-1]

    def json(self, *args: str) -> object:
        return json.loads(self.ok(*args, "--format", "json"))

    def whoami(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def deployment(tmp_path: Path, hf_client_env: Path, database_url: str) -> Iterator[Deployment]:
    runner = start_service(tmp_path, TEST_OPTIONS, settings={"database_url": database_url}, catalog_tokens=True)
    yield Deployment(next(runner), tmp_path / "hub", database_url)
    next(runner, None)


def test_users_organizations_and_members(deployment: Deployment) -> None:
    d = deployment
    d.ok("user", "create", "ada")
    d.ok("user", "create", "root", "--hub-admin")
    d.ok("user", "create", "rita")
    d.ok("org", "create", "acme", "--admin", "ada")
    d.ok("org", "member", "add", "acme", "rita", "--role", "write")
    users = d.json("user", "list")
    assert isinstance(users, list)
    assert [(u["name"], u["hub_admin"], u["disabled_at"]) for u in users] == [
        ("ada", False, None), ("rita", False, None), ("root", True, None)]
    assert [o["name"] for o in d.json("org", "list")] == ["acme"]  # type: ignore[union-attr]
    assert d.json("org", "member", "list", "acme") == [{"user": "ada", "role": "admin"},
                                                      {"user": "rita", "role": "write"}]
    d.ok("org", "member", "add", "acme", "rita", "--role", "read")  # changes the role
    d.ok("org", "member", "remove", "acme", "ada")
    assert d.json("org", "member", "list", "acme") == [{"user": "rita", "role": "read"}]
    table = d.ok("user", "list")
    assert "Users" in table and "root" in table and "yes" in table

    # Expected failures: one line, the error class's exit code.
    taken = d.run("org", "create", "ada")  # users and organizations share one name space
    assert taken.exit_code == 4 and "taken" in taken.output
    missing = d.run("org", "member", "add", "acme", "nobody")
    assert missing.exit_code == 3 and "nobody" in missing.output
    not_member = d.run("org", "member", "remove", "acme", "ada")
    assert not_member.exit_code == 3
    bad_role = d.run("org", "member", "add", "acme", "rita", "--role", "owner")
    assert bad_role.exit_code == 2
    bad_name = d.run("user", "create", "alice\n")  # a trailing newline is not a namespace
    assert bad_name.exit_code == 2
    for result in (taken, missing, not_member, bad_name):
        assert "Traceback" not in result.output and result.output.count("\n") < 4


def test_a_disabled_users_tokens_are_refused_and_work_again_when_enabled(deployment: Deployment) -> None:
    d = deployment
    d.ok("user", "create", "bob")
    token = d.token("bob-laptop", "--user", "bob", "--role", "write")
    seen = d.whoami(token)
    assert seen.status_code == 200 and seen.json()["name"] == "bob"
    d.ok("user", "disable", "bob")
    assert d.whoami(token).status_code == 401
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=d.url, token=token).create_repo("bob/after")
    assert refused.value.response.status_code == 401
    assert d.json("user", "list")[0]["disabled_at"] is not None  # type: ignore[index]
    d.ok("user", "enable", "bob")
    assert d.whoami(token).status_code == 200


def test_a_revoked_token_gets_401_and_others_keep_working(deployment: Deployment) -> None:
    d = deployment
    d.ok("user", "create", "carol")
    first = d.token("carol-1", "--user", "carol", "--write")
    second = d.token("carol-2", "--user", "carol")
    d.ok("token", "revoke", "carol-1")
    assert d.whoami(first).status_code == 401
    assert d.whoami(second).status_code == 200
    listed = d.json("token", "list", "--user", "carol")
    assert [(t["name"], t["role"], t["revoked_at"] is None) for t in listed] == [  # type: ignore[union-attr]
        ("carol-1", "write", False), ("carol-2", "read", True)]
    assert first not in json.dumps(listed) and second not in json.dumps(listed)


def test_a_scoped_token_writes_its_repository_and_nothing_else(deployment: Deployment) -> None:
    d = deployment
    d.ok("user", "create", "alice")
    full = HfApi(endpoint=d.url, token=d.token("alice-full", "--user", "alice", "--write"))
    full.create_repo("alice/a")
    full.create_repo("alice/b", private=True)
    full.create_repo("alice/c")
    scoped = d.token("alice-ci", "--user", "alice", "--scope", "repo:alice/a:write", "--scope", "repo:alice/c:read")
    api = HfApi(endpoint=d.url, token=scoped)
    api.upload_file(path_or_fileobj=b"in scope\n", path_in_repo="ok.txt", repo_id="alice/a")
    assert {f.rfilename for f in full.model_info("alice/a", files_metadata=False).siblings or []} >= {"ok.txt"}
    with pytest.raises(HfHubHTTPError) as read_only:
        api.upload_file(path_or_fileobj=b"read scope\n", path_in_repo="no.txt", repo_id="alice/c")
    assert read_only.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError):  # private and out of scope: as if it did not exist
        api.model_info("alice/b")
    with pytest.raises(HfHubHTTPError) as create:
        api.create_repo("alice/new")
    assert create.value.response.status_code == 403
    assert "no.txt" not in {f.rfilename for f in full.model_info("alice/c").siblings or []}
    listed = d.json("token", "list", "--user", "alice")[0]  # type: ignore[index]  # by name: alice-ci
    assert listed["fine_grained"] and listed["scopes"] == ["repo:alice/a:write", "repo:alice/c:read"]

    # A scope is checked before the token exists.
    for bad in ("repo:alice:write", "repo:alice/a:admin", "team:alice:read", "namespace:al ice:read"):
        assert d.run("token", "create", "bad", "--user", "alice", "--scope", bad).exit_code == 2, bad
    both = d.run("token", "create", "bad", "--user", "alice", "--scope", "repo:alice/a:read", "--write")
    assert both.exit_code == 2
    assert [t["name"] for t in d.json("token", "list", "--user", "alice")] == ["alice-ci", "alice-full"]  # type: ignore[union-attr]


def test_the_operators_token_form_still_makes_a_read_token_of_the_hub_administrator(deployment: Deployment) -> None:
    d = deployment
    token = d.token("prometheus")
    seen = d.whoami(token)
    assert seen.status_code == 200 and seen.json()["name"] == "admin"
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=d.url, token=token).create_repo("admin/x")
    assert refused.value.response.status_code == 403
    [record] = d.json("token", "list")  # type: ignore[misc]
    assert record["user"] == "admin" and record["role"] == "read" and not record["fine_grained"]


def test_a_quota_set_by_the_cli_is_enforced_and_shown(deployment: Deployment) -> None:
    d = deployment
    d.ok("user", "create", "dora")
    api = HfApi(endpoint=d.url, token=d.token("dora-w", "--user", "dora", "--write"))
    api.create_repo("dora/m")
    api.upload_file(path_or_fileobj=b"a" * 6000, path_in_repo="a.bin", repo_id="dora/m")
    said = " ".join(d.ok("quota", "set", "dora", "8KB").split())
    [shown] = d.json("quota", "show", "dora")  # type: ignore[misc]
    used = shown["logical_bytes"]
    assert shown["quota_bytes"] == 8000 and 6000 <= used < 8000 and f"holds {used:,} logical bytes" in said
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=b"b" * 3000, path_in_repo="b.bin", repo_id="dora/m")
    assert refused.value.response.status_code == 403
    assert "quota of 8,000" in str(refused.value) and f"holds {used:,} now" in str(refused.value)
    assert "dora" in d.ok("quota", "show")
    d.ok("quota", "set", "dora", "none")
    api.upload_file(path_or_fileobj=b"b" * 3000, path_in_repo="b.bin", repo_id="dora/m")
    assert d.json("quota", "show", "dora") == [{"namespace": "dora", "logical_bytes": used + 3000,
                                                "quota_bytes": None}]
    assert d.run("quota", "set", "dora", "-5").exit_code == 2
    assert d.run("quota", "set", "nobody", "1GB").exit_code == 3
    assert d.run("quota", "show", "nobody").exit_code == 3


def test_quota_sizes_parse_with_units() -> None:
    assert parse_bytes("1234") == 1234
    assert parse_bytes("10GB") == 10 * 10**9
    assert parse_bytes("512 MiB") == 512 * 2**20
    assert parse_bytes("None") is None
    for bad in ("", "1.5GB", "10 parsecs", "-1"):
        with pytest.raises(Exception, match="a number of bytes"):
            parse_bytes(bad)
