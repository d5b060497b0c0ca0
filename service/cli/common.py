"""What every `deltahub` command shares: settings, opening the hub, output, and the CLI's own errors.

Errors: every failure a user can cause or fix is a DeltahubError; the root command turns it into one
line on stderr (no traceback) and exits with the error class's `exit_code`. The codes are listed in
docs/cli.md and must not change meaning.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console

from storage.core.errors import DeltahubError, NotFound
from storage.settings import Settings, load_settings

if TYPE_CHECKING:
    from storage.app.hub import Hub

# Output that is not a terminal (a pipe, a log, a test) gets wide tables: a SHA-256 or a repository path
# folded across lines is no good to grep.
PIPED_WIDTH = 200


def _console(stream: TextIO, *, stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else PIPED_WIDTH)


console = _console(sys.stdout)
err_console = _console(sys.stderr, stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


class ServerUnreachable(DeltahubError):
    """cannot reach a deltahub server at {endpoint} ({reason}): is `deltahub serve` running there? \
Pass --endpoint or set DELTAHUB_ENDPOINT"""

    exit_code = 7


class AccessDenied(DeltahubError):
    """the server refused the request ({detail}): pass a token with --token or DELTAHUB_TOKEN \
(an admin creates one with `deltahub admin token create NAME --user USER --write`)"""

    exit_code = 8


class ServerFailed(DeltahubError):
    """the server failed to answer ({detail}); its log says why"""

    exit_code = 9


class IngestFailed(DeltahubError):
    """{count} pushed file(s) failed ingest (they stay downloadable as uploaded): {detail}; \
an admin can retry with `deltahub admin requeue`"""

    exit_code = 10


class WaitTimedOut(DeltahubError):
    """gave up after {seconds:.0f}s with {count} file(s) still being ingested; the server keeps working \
on them, check later with `deltahub admin report`"""

    exit_code = 11


class LocalFilesError(DeltahubError):
    """cannot read or write {path}: {reason}"""

    exit_code = 12


class CannotListen(DeltahubError):
    """cannot listen on {address}: {reason}; stop what holds it, or pass another --port \
(or set DELTAHUB_PORT)"""

    exit_code = 13


class Interrupted(DeltahubError):
    """interrupted ({detail})"""

    # What a shell reports for a process ended by SIGINT (128 + 2), so scripts see the same either way.
    exit_code = 130


class NoDeployment(NotFound):
    """no deltahub catalog at {path}: pass --data-dir (or set DELTAHUB_DATA_DIR) to the directory \
`deltahub serve` uses, or create one with `deltahub admin migrate`"""


def data_dir_option(func: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Home of the SQLite catalog and local object store, unless DELTAHUB_DATABASE_URL and "
        "DELTAHUB_STORE_* name others [default: $DELTAHUB_DATA_DIR or deltahub-data in the working directory].",
    )(func)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    """The settings from DELTAHUB_* variables, with the command line's choices on top."""
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def default_catalog(settings: Settings) -> Path | None:
    """The SQLite file of the embedded catalog, when no database URL names another catalog."""
    return settings.data_dir / "catalog.sqlite3" if settings.database_url is None else None


@contextmanager
def admin_hub(settings: Settings, *, create: bool = False) -> Iterator[Hub]:
    """The hub the settings name, for commands that act on it directly (no HTTP, no worker).

    An embedded catalog is migrated on open, as `deltahub serve` does; a PostgreSQL catalog is left to
    `deltahub admin migrate`, which deployments run once before starting replicas.
    """
    from storage.app.hub import Hub

    catalog = default_catalog(settings)
    if catalog is not None and not create and not catalog.exists():
        raise NoDeployment(path=catalog)
    sqlite = settings.resolved_database_url.startswith("sqlite")
    hub = Hub.from_settings(settings, migrate=sqlite)
    try:
        yield hub
    finally:
        hub.close()


def redact_url(url: str) -> str:
    """A database or broker URL fit for a terminal: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}{port}"))


def human_bytes(count: int | float) -> str:
    sign = "-" if count < 0 else ""
    value = float(abs(count))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
