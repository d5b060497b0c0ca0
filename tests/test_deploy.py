"""deploy/ kept honest without Docker: compose.yaml and the Dockerfile checked against the code they run.

Every DELTAHUB_* variable must be a setting, the production settings they make must validate, every
command must be a real `deltahub` command, and the start-up order must hold (migrations before the API).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from service.cli import cli
from storage.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error}; $$ is a literal dollar.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def deltahub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image", "").startswith("deltahub")}


def interpolate(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, kind, word = match.groups()
        if name in env:
            return env[name]
        if kind and kind.endswith("-"):
            return word
        return f"x{name.lower()}"  # a required secret: any value stands in

    return INTERPOLATION.sub(replace, value)


def deltahub_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service["environment"]
    assert isinstance(environment, dict), "environment as a mapping keeps the anchors readable"
    return {key: interpolate(str(value), {}) for key, value in environment.items()}


def test_every_deltahub_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"DELTAHUB_{name.upper()}" for name in Settings.model_fields}
    services = deltahub_services(compose)
    assert set(services) >= {"api", "worker", "migrate"}
    for name, service in services.items():
        unknown = {key for key in deltahub_environment(service) if key.startswith("DELTAHUB_")} - known
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_the_environment_makes_valid_production_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in deltahub_services(compose).items():
        for key in [k for k in os.environ if k.startswith("DELTAHUB_")]:
            monkeypatch.delenv(key)
        for key, value in deltahub_environment(service).items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.environment == "production", name
        assert settings.resolved_database_url.startswith("postgresql://deltahub:"), name
        assert "@postgres:5432/" in settings.resolved_database_url, name
        assert settings.store_backend == "s3" and settings.s3_bucket, name
        assert settings.s3_endpoint_url == "http://minio:9000", name
        assert settings.s3_access_key_id and settings.s3_secret_access_key, name
        assert settings.broker_url and settings.broker_url.startswith("redis://redis:6379"), name
        assert settings.secret_key is not None, name


def test_services_agree_on_credentials_and_bucket(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = deltahub_environment(services["api"])
    minio = services["minio"]["environment"]
    assert env["DELTAHUB_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["DELTAHUB_S3_SECRET_ACCESS_KEY"] == interpolate(minio["MINIO_ROOT_PASSWORD"], {})
    postgres = services["postgres"]["environment"]
    user, password = postgres["POSTGRES_USER"], interpolate(postgres["POSTGRES_PASSWORD"], {})
    assert env["DELTAHUB_DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/{postgres['POSTGRES_DB']}"
    bucket_command = " ".join(services["create-bucket"]["command"])
    assert f"local/{env['DELTAHUB_S3_BUCKET']}" in bucket_command
    # Secrets are required, never defaulted.
    text = (DEPLOY / "compose.yaml").read_text()
    for secret in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "SECRET_KEY"):
        assert f"${{{secret}:?" in text and f"${{{secret}:-" not in text


def test_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    runner = CliRunner()
    for name, service in deltahub_services(compose).items():
        command = service["command"]
        assert command[0] == "deltahub", name
        # --help after the real arguments: unknown commands or options fail parsing before help is shown.
        result = runner.invoke(cli, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{name}: {' '.join(command)}: {result.output}"
        assert "Usage: " in result.output


def test_migrations_run_before_the_api_and_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["deltahub", "admin", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["create-bucket"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_the_api_health_check_hits_the_health_route(compose: dict[str, Any], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.auth import StaticTokenStore
    from storage.app.hub import Hub

    api = compose["services"]["api"]
    check = " ".join(api["healthcheck"]["test"])
    port = api["command"][api["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/api/v1/health" in check
    assert any(str(mapping).endswith(f":{port}") for mapping in api["ports"])
    hub = Hub.from_settings(load_settings(data_dir=tmp_path), migrate=True)
    try:
        with TestClient(create_app(hub, hub.settings, StaticTokenStore({}))) as client:
            assert client.get("/api/v1/health").status_code == 200
            assert client.get("/api/v1/no-such-route").status_code == 404
    finally:
        hub.engine.dispose()
    for name in ("postgres", "redis", "minio"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_workers_scale_and_volumes_are_named(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            source = str(mount).split(":", 1)[0]
            assert not source.startswith((".", "/")), f"bind mount {mount}: use a named volume"
            used.add(source)
    assert used == declared == {"postgres-data", "redis-data", "minio-data"}


def test_dockerfile_installs_every_package_and_drops_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM python:3.11-slim")
    assert [line for line in lines if line.startswith("FROM")][-1] == "FROM python:3.11-slim"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {line.split()[1] for line in lines if line.startswith("COPY")}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", "setup.py", "README.md"} <= {
        part for line in lines if line.startswith("COPY") for part in line.split()[1:-1]
    }
    # The kernels are compiled in a stage with a compiler; the runtime stage installs the wheel.
    assert any(line.startswith("RUN apt-get") and "gcc" in line for line in lines)
    assert any(line.startswith("RUN pip wheel") for line in lines)
    assert any(line.startswith("RUN pip install /wheels/") for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1] not in ("root", "0")
    command = re.search(r"^CMD \[(.*)\]$", dockerfile, re.M)
    assert command is not None
    args = [part.strip().strip('"') for part in command.group(1).split(",")]
    assert args[0] == "deltahub"
    assert CliRunner().invoke(cli, [*args[1:], "--help"]).exit_code == 0
