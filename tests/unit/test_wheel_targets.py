"""Wheels for every target Python, and the bootstrap lock that install.sh installs Ansible from."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from bundle import wheels


def _wheel(folder: Path, name: str, version: str, tag: str, *requires: str) -> Path:
    path = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
        zf.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
    return path


def _pins(*names: str) -> list[wheels.Pinned]:
    return [wheels.Pinned(name, "1.0", ("0" * 64,)) for name in names]


def test_the_bootstrap_closure_follows_each_pythons_markers(tmp_path: Path) -> None:
    common = [
        _wheel(tmp_path, "ansible_core", "1.0", "py3-none-any", "jinja2", "pyyaml"),
        _wheel(
            tmp_path, "jinja2", "1.0", "py3-none-any", "markupsafe>=2", "babel; extra == 'i18n'"
        ),
        _wheel(tmp_path, "markupsafe", "1.0", "cp311-cp311-linux"),
        _wheel(tmp_path, "pyyaml", "1.0", "cp311-cp311-linux"),
    ]
    old = _wheel(tmp_path, "tomli", "1.0", "py3-none-any")
    only_old = _wheel(
        tmp_path, "ansible_core", "1.0", "py3-none-any", "jinja2", "pyyaml",
        "tomli; python_version < '3.12'",
    )  # fmt: skip
    by_python = {"3.11": [only_old, *common[1:], old], "3.13": common}
    pinned = _pins("ansible-core", "jinja2", "markupsafe", "pyyaml", "tomli", "duckdb", "babel")
    closure = wheels.bootstrap_closure(pinned, by_python, ["ansible-core"])
    assert [pin.key for pin in closure] == [
        "ansible-core",
        "jinja2",
        "markupsafe",
        "pyyaml",
        "tomli",
    ]


def test_a_bootstrap_dependency_missing_from_the_lock_is_named(tmp_path: Path) -> None:
    root = _wheel(tmp_path, "ansible_core", "1.0", "py3-none-any", "resolvelib")
    with pytest.raises(ConfigError, match=r"resolvelib, which ansible-core needs on CPython 3\.13"):
        wheels.bootstrap_closure(_pins("ansible-core"), {"3.13": [root]}, ["ansible-core"])


def test_the_bootstrap_lock_pins_every_file_by_hash(tmp_path: Path) -> None:
    root = _wheel(tmp_path, "ansible_core", "1.0", "py3-none-any")
    out = tmp_path / "bootstrap.lock"
    wheels.write_bootstrap_lock(out, _pins("ansible-core", "duckdb"), {"3.11": [root]})
    reread = wheels.read_lock(out)
    assert [(pin.key, pin.version, pin.hashes) for pin in reread] == [
        ("ansible-core", "1.0", ("0" * 64,))
    ]
