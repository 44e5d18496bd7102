"""Run the `appliance` CLI and SIGKILL it just before its N-th durable step (a test tool).

Steps are the CLI's progress messages (verify, build and publish stages) and the file-system
calls that make an import durable (mkdir, write, fsync, rename, replace, symlink, unlink). Each
step is logged before it runs, so a run with N=0 (never kill) lists every point a crash can hit.

    python crash_harness.py N LOG appliance-args...
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from appliance import cli, console

LIMIT = int(sys.argv[1])
LOG = sys.argv[2]
count = 0


def step(kind: str, detail: str) -> None:
    """Log a step; die here, before it happens, if it is the N-th."""
    global count  # noqa: PLW0603
    count += 1
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{kind}\t{detail}\n")
    if count == LIMIT:
        os.kill(os.getpid(), signal.SIGKILL)


def wrap(name: str) -> None:
    real: Callable[..., Any] = getattr(os, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        step(name, " -> ".join(str(a) for a in args if isinstance(a, str | os.PathLike)))
        return real(*args, **kwargs)

    setattr(os, name, wrapped)


for function in ("mkdir", "write", "fsync", "rename", "replace", "symlink", "unlink"):
    wrap(function)

progress_call = console.Progress.__call__


def progress(self: console.Progress, message: str) -> None:
    step("progress", message)
    progress_call(self, message)


console.Progress.__call__ = progress  # type: ignore[method-assign]
sys.argv = ["appliance", *sys.argv[3:]]
cli.main()
