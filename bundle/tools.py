"""The external tools the build runs (npm, mmdebstrap, pip, git), each through one of two helpers:
`run` for a step that must succeed, `probe` for a question that a failure also answers.

Both log the command (logger "bundle.tools", level INFO) before running it, never through a shell.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance.errors import ConfigError

log = logging.getLogger(__name__)


def run(
    command: Sequence[str],
    failure: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The tool's output; ConfigError "<failure>: <its last line>" if it exits with an error.

    Its last line is the last non-blank line of its error output, else of its output, else its
    exit status.
    """
    log.info("run: %s", shlex.join(command))
    result = subprocess.run(
        list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        msg = f"{failure}: {_last_line(result)}"
        raise ConfigError(msg)
    return result.stdout


def probe(command: Sequence[str], *, cwd: Path) -> str | None:
    """The tool's output, or None if it is missing or exits with an error (git outside a checkout)."""
    log.info("probe: %s", shlex.join(command))
    try:
        result = subprocess.run(
            list(command), cwd=cwd, capture_output=True, encoding="utf-8", check=False
        )
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed tool said last."""
    for stream in (result.stderr, result.stdout):
        lines = [line.strip() for line in (stream or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return f"exit status {result.returncode}"
