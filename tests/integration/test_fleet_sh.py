"""fleet.sh refuses what it cannot run in one line, before it sets anything up (bash, for real).

The fleet itself runs end to end in tests/e2e/test_fleet.py; here, the flags: each refusal is one
line "fleet.sh: error: ..." and exit 2, with nothing made (no Ansible set up, no playbook run).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.bundles import bundle_layout as layout
from tests.integration.conftest import REPO

FLEET_SH = REPO / layout.FLEET_SCRIPT


def fleet_sh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FLEET_SH), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], ""),
        (["upgrade"], "unknown command upgrade: install, import, status or playbook"),
        (["install"], "install needs the bundle's tar"),
        (["install", "-i", "fleet.yml"], "install needs the bundle's tar"),
        (["install", "/nonexistent/appliance-1.0.0.tar", "-i", "fleet.yml"], "no such file"),
        (["import"], "import needs the pack"),
        (["import", "{file}"], "name the fleet's inventory: -i INVENTORY"),
        (["status"], "name the fleet's inventory: -i INVENTORY"),
        (["status", "--json"], "name the fleet's inventory"),
        (["playbook"], "playbook needs ansible-playbook's arguments"),
    ],
)
def test_fleet_sh_refuses_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "results.pack").write_text("")
    result = fleet_sh(*[a.format(file=tmp_path / "results.pack") for a in args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    if message:
        [line] = result.stderr.strip().splitlines()[-1:]
        assert line.startswith("fleet.sh: error: ") and message in line, line
    assert list(tmp_path.iterdir()) == [tmp_path / "results.pack"]


def test_fleet_sh_outside_a_bundle_says_where_to_run_it(tmp_path: Path) -> None:
    """From the source tree (no wheels/), it stops before setting Ansible up."""
    result = fleet_sh("status", "-i", "fleet.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "fleet.sh: error: wheels/ has no pip wheel or bootstrap.lock: run fleet.sh from an unpacked bundle"
    )


def test_fleet_sh_help_names_every_command() -> None:
    result = fleet_sh("--help")
    assert result.returncode == 0
    for command in ("install BUNDLE.tar", "import PACK", "status", "--json", "playbook"):
        assert command in result.stdout
