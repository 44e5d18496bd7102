"""Python distribution names: the one a requirement line starts with (PEP 508), and the form in
which two names compare (PEP 503). The node's audits and the bundle builder read them here."""

from __future__ import annotations

import re

# A distribution name as requirement lines and lock files spell it (before any extra or version).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REQUIREMENT_NAME = re.compile(rf"\s*({NAME_PATTERN})")


def requirement_name(requirement: str) -> str | None:
    """The distribution a requirement line names, or None if it starts with no name."""
    match = _REQUIREMENT_NAME.match(requirement)
    return match[1] if match else None


def normalise_name(name: str) -> str:
    """A distribution name as PEP 503 compares it: lower case, each run of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()
