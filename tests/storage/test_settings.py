"""The typed settings: environment parsing, defaults, overrides and production refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.options import ServiceOptions
from storage.core.errors import InvalidInput
from storage.settings import InvalidSettings, Settings, load_settings

PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://deltahub@db/deltahub",
    "data_dir": Path("/var/lib/deltahub"),
    "secret_key": "a-shared-signing-key",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the real environment: start every test from none of our variables."""
    for name in os.environ:
        if name.startswith("DELTAHUB_") and name.removeprefix("DELTAHUB_").lower() in Settings.model_fields:
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings()
    assert settings.environment == "development"
    assert settings.data_dir == Path("deltahub-data")
    assert settings.resolved_database_url == "sqlite:///deltahub-data/catalog.sqlite3"
    assert settings.store_backend == "local"
    assert settings.resolved_store_dir == Path("deltahub-data/objects")
    assert settings.broker_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_header_bytes == 100_000_000
    assert settings.frame_bytes == 4 * 1024 * 1024
    assert settings.pack_target_bytes == 64 * 1024 * 1024
    assert (settings.max_chain_depth, settings.gc_grace_seconds, settings.ingest_workers) == (4, 3600, 2)
    assert settings.s3_region == "us-east-1"
    assert settings.s3_prefix == ""
    assert settings.git_max_pack_bytes == 128 * 1024 * 1024


def test_environment_variables_are_parsed_into_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAHUB_DATA_DIR", "/srv/dh")
    monkeypatch.setenv("DELTAHUB_PORT", "9001")
    monkeypatch.setenv("DELTAHUB_FRAME_BYTES", "1048576")
    monkeypatch.setenv("DELTAHUB_STORE_BACKEND", "s3")
    monkeypatch.setenv("DELTAHUB_S3_BUCKET", "models")
    monkeypatch.setenv("DELTAHUB_S3_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("DELTAHUB_S3_SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("DELTAHUB_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DELTAHUB_GIT_MAX_PACK_BYTES", "1000000")
    settings = load_settings()
    assert settings.git_max_pack_bytes == 1_000_000
    assert ServiceOptions.from_settings(settings).git_max_pack_bytes == 1_000_000  # what the push route reads
    assert settings.data_dir == Path("/srv/dh")
    assert settings.resolved_database_url == "sqlite:////srv/dh/catalog.sqlite3"
    assert settings.port == 9001
    assert settings.frame_bytes == 1024 * 1024
    assert settings.store_backend == "s3"
    assert settings.s3_bucket == "models"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "very-secret"
    # The secret never shows up when settings are logged.
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings.model_dump())


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAHUB_DATABASE_URL", "")
    monkeypatch.setenv("DELTAHUB_STORE_DIR", "")
    settings = load_settings(data_dir=Path("/d"))
    assert settings.resolved_database_url == "sqlite:////d/catalog.sqlite3"
    assert settings.resolved_store_dir == Path("/d/objects")


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAHUB_PORT", "9001")
    monkeypatch.setenv("DELTAHUB_DATABASE_URL", "postgresql://env/db")
    settings = load_settings(port=8123, database_url="sqlite:////tmp/x.sqlite3", store_dir=Path("/blobs"))
    assert settings.port == 8123
    assert settings.resolved_database_url == "sqlite:////tmp/x.sqlite3"
    assert settings.resolved_store_dir == Path("/blobs")


def test_nothing_is_read_at_import_time() -> None:
    # A fresh interpreter, so the import really runs with the broken variable set.
    program = (
        "import storage.settings as s\n"
        "try:\n    s.load_settings()\n"
        "except s.InvalidSettings as e:\n    print(e)"
    )
    environment = {**os.environ, "DELTAHUB_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("invalid settings: port:")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"store_backend": "ftp"}, "store_backend"),
        ({"environment": "staging"}, "environment"),
        ({"max_chain_depth": -1}, "max_chain_depth"),
        ({"frame_bytes": 0}, "frame_bytes"),
        ({"ingest_workers": 0}, "ingest_workers"),
        ({"git_max_pack_bytes": 0}, "git_max_pack_bytes"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_invalid_values_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSettings, match=field) as raised:
        load_settings(**overrides)
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.exit_code == 2


def test_s3_needs_a_bucket() -> None:
    with pytest.raises(InvalidSettings, match="s3_bucket"):
        load_settings(store_backend="s3")
    assert load_settings(store_backend="s3", s3_bucket="models").s3_bucket == "models"


def test_half_a_credential_is_refused() -> None:
    with pytest.raises(InvalidSettings, match="both"):
        load_settings(store_backend="s3", s3_bucket="b", s3_access_key_id="AKID")
    with pytest.raises(InvalidSettings, match="both"):
        load_settings(s3_secret_access_key="secret")


def test_production_accepts_a_complete_configuration() -> None:
    settings = load_settings(**PRODUCTION)
    assert settings.environment == "production"
    s3 = load_settings(
        **PRODUCTION,
        store_backend="s3",
        s3_bucket="models",
        s3_access_key_id="AKID",
        s3_secret_access_key="secret",
    )
    assert s3.store_backend == "s3"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"database_url": None}, "PostgreSQL"),
        ({"secret_key": None}, "secret_key"),
        ({"database_url": "sqlite:////var/lib/deltahub/catalog.sqlite3"}, "PostgreSQL"),
        ({"database_url": "sqlite+pysqlite:////var/lib/deltahub/c.sqlite3"}, "PostgreSQL"),
        ({"store_backend": "s3", "s3_bucket": "models"}, "s3_access_key_id"),
        ({"data_dir": Path("deltahub-data")}, "absolute"),
        ({"store_dir": Path("objects")}, "absolute"),
    ],
)
def test_production_refuses_development_defaults(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSettings, match=message):
        load_settings(**{**PRODUCTION, **changes})
    # The same configuration is fine for a developer.
    assert load_settings(**{**PRODUCTION, **changes, "environment": "development"})


def test_production_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAHUB_ENVIRONMENT", "production")
    with pytest.raises(InvalidSettings, match="PostgreSQL"):
        load_settings()


def test_the_hot_file_cache_is_on_by_default_under_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=Path("/srv/dh"))
    assert settings.hot_cache_bytes == 2 << 30 and settings.hot_cache_reads == 2
    assert settings.resolved_hot_cache_dir == Path("/srv/dh/hot")
    monkeypatch.setenv("DELTAHUB_HOT_CACHE_BYTES", "0")
    monkeypatch.setenv("DELTAHUB_HOT_CACHE_DIR", "/fast/hot")
    off = load_settings()
    assert off.hot_cache_bytes == 0 and off.resolved_hot_cache_dir == Path("/fast/hot")
    with pytest.raises(InvalidSettings):
        load_settings(hot_cache_bytes=-1)
    with pytest.raises(InvalidSettings):
        load_settings(hot_cache_reads=0)
