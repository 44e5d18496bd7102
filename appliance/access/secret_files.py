"""Files that hold a secret or decide trust: refused when other users may change (or read) them."""

from __future__ import annotations

import stat
from pathlib import Path

from appliance.errors import ConfigError
from appliance.faults import os_fault


def check_private(path: Path, what: str, secret: bool) -> None:
    """Refuse a file that other users may change (or, for a secret, read): ConfigError says how."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise os_fault(exc, f"reading {path}") from exc
    loose = stat.S_IWGRP | stat.S_IWOTH | (stat.S_IROTH if secret else 0)
    if mode & loose:
        can = "read or changed" if secret else "changed"
        msg = (
            f"{what} {path} can be {can} by other users (mode {stat.S_IMODE(mode):o}); "
            f"chmod {'640' if secret else '644'} {path}"
        )
        raise ConfigError(msg)
