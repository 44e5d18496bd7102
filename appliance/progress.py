"""Progress reporting: what the library's long steps are given, so that only the CLI prints."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]
"""A sink for one line of progress; the CLIs pass one that prints with the time elapsed."""


def quiet(_message: str) -> None:
    """The sink that drops every line (the default when no CLI is listening)."""
