"""fleet.sh refuses what it cannot run in one line, before it sets anything up (bash, for real).

The fleet itself runs end to end in tests/e2e/test_fleet.py; here, the flags: each refusal is one
line "fleet.sh: error: ..." and exit 2, with nothing made (no Ansible set up, no playbook run).
"""

from __future__ import annotations

import os
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


def test_fleet_sh_runs_any_playbook_with_the_bundles_ansible(unpacked_bundle: Path) -> None:
    result = fleet_sh_of(unpacked_bundle, "playbook", "--version")
    assert result.returncode == 0, result.stderr
    assert (
        "fleet.sh: running ansible-playbook with Ansible from the bundle's wheels" in result.stderr
    )
    assert result.stdout.startswith("ansible-playbook [core 2.19.")


def test_a_node_that_does_not_answer_is_named_and_a_path_with_spaces_stays_one(
    unpacked_bundle: Path, tmp_path: Path
) -> None:
    """fleet-import.yml names the node it could not reach and the one without the appliance.

    `here` is this machine over a local connection with no appliance (its state file is
    absent): the run stops there after one stat. The pack's path has a space in it.
    """
    folder = tmp_path / "a stick"
    folder.mkdir()
    (folder / "results 1.pack").write_text("not checked before a node answers")
    inventory = tmp_path / "fleet.ini"
    inventory.write_text(
        "silent ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody\n"
        f"here ansible_connection=local appliance_state_file={tmp_path}/absent/installed.json "
        "ansible_python_interpreter=/usr/bin/python3\n"
    )
    result = fleet_sh_of(
        unpacked_bundle, "import", str(folder / "results 1.pack"), "-i", str(inventory)
    )
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "fleet.sh: error: 2 node(s) did not import results 1.pack: silent: no answer "
        "(unreachable, or it failed before the import: see above); here: not imported: the "
        "appliance is not installed here (run fleet-install.yml first)"
    )
    assert not (tmp_path / "absent").exists()


def fleet_sh_of(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(bundle / layout.FLEET_SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"},
    )


def test_fleet_sh_rolls_out_only_its_own_bundle(unpacked_bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "appliance-0.0.1.tar"
    other.write_text("")
    inventory = tmp_path / "fleet.ini"
    inventory.write_text("silent ansible_host=127.0.0.1 ansible_port=1\n")
    result = fleet_sh_of(unpacked_bundle, "install", str(other), "-i", str(inventory))
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet.sh: error: these playbooks are appliance "), last
    assert "bundle= is appliance-0.0.1.tar: run the fleet.sh" in last, last
    assert "silent" not in result.stdout  # no node was touched
