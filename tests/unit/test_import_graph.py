"""The packages' import graph, read with `ast`: node code (appliance/, server/) never imports the
bundle builder (bundle/), and the top-level packages import each other in no loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "server", "bundle", "ml_workstation")
NODE_PACKAGES = ("appliance", "server")


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) for every import statement of a file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def arrows() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> where, for imports between top-level packages."""
    found: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if "node_modules" in path.parts:
                continue
            for module, line in imports_of(path):
                target = module.split(".")[0]
                if target == package or target not in PACKAGES:
                    continue
                found.setdefault((package, target), []).append(f"{relative}:{line} {module}")
    return found


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Every loop of the package graph, each as the packages along it."""
    loops = []

    def walk(path: list[str]) -> None:
        for source, target in sorted(edges):
            if source != path[-1]:
                continue
            if target == path[0]:
                loops.append([*path, target])
            elif target not in path and target > path[0]:
                walk([*path, target])

    for start in PACKAGES:
        walk([start])
    return loops


def test_imports_are_read_from_the_syntax_tree(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "'''import bundle in a docstring is no import'''\n"
        "import bundle.layout\n"
        "from . import sibling\n"
        "def f():\n"
        "    from bundle import oci\n",
        encoding="utf-8",
    )
    assert list(imports_of(source)) == [("bundle.layout", 2), ("bundle", 5)]


def test_node_code_never_imports_the_builder() -> None:
    found = arrows()
    upward = {
        arrow: where
        for arrow, where in found.items()
        if arrow[0] in NODE_PACKAGES and arrow[1] == "bundle"
    }
    assert upward == {}
    assert ("bundle", "appliance") in found  # the builder stands on the node's formats


def test_no_package_imports_another_round_a_loop() -> None:
    found = arrows()
    assert cycles(set(found)) == [], {arrow: found[arrow][:3] for arrow in found}


def test_a_loop_is_found() -> None:
    edges = {("appliance", "bundle"), ("bundle", "server"), ("server", "appliance")}
    assert cycles(edges) == [["appliance", "bundle", "server", "appliance"]]
