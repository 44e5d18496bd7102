"""install.sh --version and --help, run for real: what an operator asks before anything else.

`--version` reads the bundle's manifest.json (before any check, and says so in --help) and
needs neither root nor the trust files; a missing or broken manifest is one error line, exit 3.
`--help` names every exit code the script uses.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from appliance.bundles import bundle_layout as layout
from tests.integration.test_bundle_build import TREE_VERSION, signed_tree

INSTALL_SH = Path(__file__).resolve().parents[2] / "install.sh"


def install_sh(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(tree / layout.INSTALL_SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_names_the_bundle_its_revision_and_build_time(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], flag: str
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    manifest = json.loads((tree / layout.MANIFEST).read_text())
    build = {"revision": "0123abc", "created": "2026-01-02T03:04:05Z"}
    (tree / layout.MANIFEST).write_text(json.dumps({**manifest, "build": build}))
    result = install_sh(tree, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"appliance {TREE_VERSION} (revision {build['revision']}, built {build['created']}; "
        f"targets {', '.join(t['name'] for t in manifest['targets'])})\n"
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "manifest.json is missing: not a whole bundle"),
        ("not-json", "manifest.json is not a bundle manifest (JSONDecodeError"),
        ("no-version", "manifest.json is not a bundle manifest (KeyError"),
        ("a-list", "manifest.json is not a bundle manifest (AttributeError"),
    ],
)
def test_version_of_a_broken_manifest_is_one_error_line(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], damage: str, message: str
) -> None:
    tree = signed_tree(tmp_path / "stick", release_key[0])
    manifest = tree / layout.MANIFEST
    if damage == "missing":
        manifest.unlink()
    else:
        manifest.write_text({"not-json": "{", "no-version": "{}", "a-list": "[]"}[damage])
    result = install_sh(tree, "--version")
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"install.sh: error: {tree}/") and message in line, line
    assert "Traceback" not in result.stderr


def test_help_names_every_exit_code_the_script_uses() -> None:
    text = INSTALL_SH.read_text()
    used = {int(code) for code in re.findall(r'\bdie "[^\n]*" ([0-9])\b', text)} | {0, 1}
    result = subprocess.run(
        ["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    listed = re.search(r"Exit codes: (.*?)\.\s*Every failure", result.stdout, re.DOTALL)
    assert listed, result.stdout
    named = {int(code) for code in re.findall(r"\b([0-9]) ", listed.group(1))}
    assert named == used, (named, used)
