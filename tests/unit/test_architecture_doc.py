"""docs/developing.md's architecture table names every module of appliance/, so the map stays true."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def modules_on_the_map() -> set[str]:
    """Module paths below appliance/ that the table names: a row names a sub-package in its first
    cell and its modules in the second, or top-level modules in its first cell."""
    guide = (REPO / "docs" / "developing.md").read_text(encoding="utf-8")
    section = guide.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `appliance/"):
            continue
        where, what = row.split(" | ")[:2]
        first = re.findall(r"`([^`]+)`", where)
        if first[0].endswith("/"):
            folder = first[0].removeprefix("appliance/")
            named |= {folder + name for name in re.findall(r"`([a-z_]+\.py)`", what)}
        else:
            named |= {name.removeprefix("appliance/") for name in first}
    return named


def test_every_appliance_module_is_on_the_map() -> None:
    modules = {
        path.relative_to(REPO / "appliance").as_posix()
        for path in (REPO / "appliance").rglob("*.py")
        if path.name != "__init__.py"
    }
    named = modules_on_the_map()
    assert modules - named == set(), "add them to the architecture table of docs/developing.md"
    assert named - modules == set(), "the architecture table names modules that do not exist"
