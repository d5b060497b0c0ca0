"""The `deltahub` command: serve the hub, run workers, push and pull models, administer a deployment.

Commands live in this package, one module per command group; this module assembles them and owns how
they fail: an expected error (any DeltahubError) is one line on stderr saying what went wrong and what
to do, and the process exits with that error's code (docs/cli.md lists them). Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from importlib import metadata
from typing import IO, Any

import click
from rich.markup import escape

from service.cli import accounts, admin, pull, push, serve, tokens
from service.cli.common import Interrupted, LocalFilesError, err_console
from storage.core.errors import DeltahubError


def _version() -> str:
    try:
        return metadata.version("deltahub")
    except metadata.PackageNotFoundError:  # run from a source tree that was not pip-installed
        return "0+unknown"


class CommandFailed(click.ClickException):
    """A DeltahubError on its way out of the CLI, with the error class's exit code."""

    def __init__(self, error: DeltahubError) -> None:
        super().__init__(error.message)
        self.error = error
        # Click's stubs call it a ClassVar, but Click reads it from the instance: ours depends on the error.
        self.exit_code = error.exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        err_console.print(f"[bold red]error:[/] {escape(self.message)}", soft_wrap=True)


class DeltahubGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeltahubError as error:
            raise CommandFailed(error) from error
        except KeyboardInterrupt:
            # One line and the shell's code for SIGINT, rather than Click's "Aborted!" and 1.
            raise CommandFailed(Interrupted(detail="Ctrl-C")) from None
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise  # output piped into `head` and the like: Click ends quietly
            # The local disk: a folder that cannot be read, a full or read-only file system.
            failure = LocalFilesError(path=error.filename or "?", reason=error.strerror or str(error))
            raise CommandFailed(failure) from error


@click.group(cls=DeltahubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="deltahub")
def cli() -> None:
    """Self-hosted model hub storage: push and pull models, stored losslessly in a fraction of the space."""


cli.add_command(serve.serve)
cli.add_command(serve.worker)
cli.add_command(push.push)
cli.add_command(pull.pull)
cli.add_command(admin.admin)
admin.admin.add_command(tokens.token)
for group in (accounts.user, accounts.org, accounts.quota):
    admin.admin.add_command(group)


def main() -> None:
    try:
        cli.main(prog_name="deltahub")
    except SystemExit as done:
        if done.code == Interrupted.exit_code:
            # Ctrl-C asks to stop now: skip the interpreter's teardown, which garbage-collects every module
            # (a second and more on a loaded machine). What pull wrote is on disk; its threads are daemons.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(Interrupted.exit_code)
        raise

