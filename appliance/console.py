"""What both command lines (appliance, mlws) share: progress lines and one-line errors."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from appliance.errors import ApplianceError, NodeFault
from appliance.faults import os_fault
from appliance.settings import DATA_DIR, Setting

F = TypeVar("F", bound=Callable[..., Any])


def setting_option(setting: Setting, **kwargs: Any) -> Callable[[F], F]:
    """A click option read from the flag, else the setting's environment variable, else its default."""
    options: dict[str, Any] = {"help": setting.help} | kwargs
    return click.option(
        setting.flag,
        setting.name,
        envvar=setting.env,
        default=setting.default,
        show_default=True,
        show_envvar=True,
        **options,
    )


def data_dir_option(**kwargs: Any) -> Callable[[F], F]:
    """The --data-dir option of every command that reads or changes the store."""
    return setting_option(DATA_DIR, type=click.Path(path_type=Path, file_okay=False), **kwargs)


# Exit code of a fault of the node that no library call turned into a NodeFault itself.
NODE_FAULT_EXIT = NodeFault.exit_code


class Progress:
    """Prints library progress to stderr with the time since the command started."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        click.echo(f"[{elapsed:6.1f}s] {message}", err=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and the error's exit code."""
    try:
        yield
    except ApplianceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (OSError, MemoryError) as exc:
        # A fault of the node that the library did not expect: one line all the same.
        click.echo(f"error: {os_fault(exc, 'the command')}", err=True)
        sys.exit(NODE_FAULT_EXIT)


# Exit code of an error nobody foresaw (a bug); the one line says so.
UNEXPECTED_EXIT = 1
INTERRUPTED_EXIT = 130


class OneLineErrors(click.Group):
    """A command group whose every failure ends in one `error:` line, never a traceback.

    Library errors carry their own exit code; a fault of the node is exit 4; anything else is a
    bug, said so in one line (APPLIANCE_DEBUG=1 shows the traceback for a report).
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            with reported_errors():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(INTERRUPTED_EXIT)
        except Exception as exc:
            if os.environ.get("APPLIANCE_DEBUG"):
                raise
            name = type(exc).__name__
            detail = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"error: unexpected {name}: {detail} (a bug: please report it; "
                "APPLIANCE_DEBUG=1 shows the traceback)",
                err=True,
            )
            sys.exit(UNEXPECTED_EXIT)
