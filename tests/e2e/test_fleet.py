"""A fleet: three simulated nodes and a controller on an internal Podman network, driven over SSH.

The machines are those of tests/e2e/fleet_nodes.py: on an `--internal` network, the nodes
Debian 13 standard installations with sshd and sudo for the admin `ops`, the controller with no
Ansible, where the operator `ann` runs `fleet.sh` from the unpacked bundle. In order, as an
operator would:

1. install 1.0.0 on all three (one batch of three);
2. import a pack on all three, then again (nothing changes), then a damaged one (refused by
   each node, named per node, nothing changed);
3. status: all alike;
4. upgrade to 1.1.0 one node at a time, with the second node's health gate made to fail (its
   inventory entry gives the new server no time): node 1 upgraded, node 2 back on 1.0.0 by itself,
   node 3 untouched, the run failing with one line naming node 2; status flags the odd node;
5. node 2's entry fixed, the rerun puts all three on 1.1.0; a second run and --check change nothing;
6. every node's own audit trail names the run, who ran it, from where, and the node's batch.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Stick
from tests.e2e.fleet_nodes import INVENTORY, Fleet, inventory, running_fleet
from tests.e2e.simnode import USB, Node
from tests.e2e.test_node_install import recap

# A rollout waits on three nodes in turn: more than the suite's 600 s a test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

NETWORK = "appliance-fleet-test"
NODES = ("fleet-node-1", "fleet-node-2", "fleet-node-3")
CONTROLLER = "fleet-controller"


@pytest.fixture(scope="module")
def fleet(stick: Stick, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """The network, the three nodes with `ops` and sshd, and the controller with `ann`'s key."""
    keys = tmp_path_factory.mktemp("fleet-ssh")
    with running_fleet(stick.folder, keys, NETWORK, NODES, CONTROLLER, ("1.0.0", "1.1.0")) as up:
        yield {**up.nodes, CONTROLLER: up.controller}


def fleet_sh(fleet: dict[str, Node], version: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fleet.sh of `version`'s unpacked bundle on the controller, as the operator ann."""
    nodes = {name: node for name, node in fleet.items() if name != CONTROLLER}
    return Fleet(nodes, fleet[CONTROLLER]).fleet_sh(version, *args)


def installed_version(node: Node) -> str:
    state: dict[str, str] = json.loads(
        node.sh("cat /etc/appliance/installed.json", check=True).stdout
    )
    return state["version"]


def installer_trail(node: Node) -> list[dict[str, Any]]:
    text = node.sh("cat /var/log/appliance/installer.jsonl", check=True).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def current_data(node: Node) -> str:
    return node.sh("readlink /var/lib/appliance/current", check=True).stdout.strip()


def status(fleet: dict[str, Node]) -> dict[str, Any]:
    result = fleet_sh(fleet, "1.1.0", "status", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_a_first_rolling_install_puts_1_0_0_on_every_node(
    fleet: dict[str, Node], stick: Stick
) -> None:
    result = fleet_sh(
        fleet, "1.0.0", "install", f"{USB}/appliance-1.0.0.tar",
        f"-e appliance_fleet_trust_fingerprint={stick.fingerprint}",
        f"-e appliance_fleet_pack_signers={USB}/pack_signers",
        "-e appliance_fleet_serial=3",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in NODES:
        node = fleet[name]
        assert installed_version(node) == "1.0.0"
        assert node.http("/health/startup")[0] == 200
        event = installer_trail(node)[-1]
        assert event["action"] == "install"
        assert event["via"] == "ssh"
        assert event["run_by"] == "ann"
        assert event["run_from"] == CONTROLLER
        fleet_fields = event["fleet"]
        assert isinstance(fleet_fields, dict)
        assert sorted(fleet_fields["batch"]) == sorted(NODES)  # one batch of three
        assert fleet_fields["nodes"] == 3
        assert str(fleet_fields["run"]).endswith(f"-{CONTROLLER}-install")
    runs = {str(installer_trail(fleet[name])[-1]["fleet"]["run"]) for name in NODES}
    assert len(runs) == 1


def test_a_pack_is_imported_on_every_node_once_and_a_damaged_one_nowhere(
    fleet: dict[str, Node],
) -> None:
    result = fleet_sh(fleet, "1.0.0", "import", f"{USB}/results-1.pack")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in NODES:
        assert current_data(fleet[name]) == "versions/v0001"
        assert f"{name}: results-1.pack imported as v0001" in result.stdout
        trail = fleet[name].sh("tail -n 1 /var/lib/appliance/history.jsonl", check=True).stdout
        assert json.loads(trail)["by"]["user"] == "ops"  # the account the controller logged in with
    again = fleet_sh(fleet, "1.0.0", "import", f"{USB}/results-1.pack")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "already imported" in again.stdout
    for name in NODES:
        assert recap_of(again.stdout, name)["changed"] == 0
    # A copy cut short on the controller: each node refuses it, and says why.
    fleet[CONTROLLER].sh(
        f"head -c 20000 {USB}/results-2.pack > /home/ann/cut.pack && chown ann /home/ann/cut.pack",
        check=True,
    )
    refused = fleet_sh(fleet, "1.0.0", "import", "/home/ann/cut.pack")
    assert refused.returncode == 4, refused.stdout[-3000:] + refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet.sh: error: 3 node(s) did not import cut.pack: "), last
    for name in NODES:
        assert f"{name}: refused: " in last, last
        assert current_data(fleet[name]) == "versions/v0001"


def recap_of(output: str, host: str) -> dict[str, int]:
    """The PLAY RECAP counts of one host."""
    line = next(
        line for line in output.splitlines() if line.startswith(f"{host} ") and "ok=" in line
    )
    return recap(line)


def test_status_shows_every_node_alike(fleet: dict[str, Node]) -> None:
    report = status(fleet)
    assert report["differing"] == []
    nodes = report["nodes"]
    assert isinstance(nodes, list)
    assert [n["node"] for n in nodes] == list(NODES)
    for row in nodes:
        assert row["software"] == "1.0.0"
        assert row["health"] == "ready"
        assert row["data"]["version"] == "v0001"
        assert row["data"]["dataset_id"] == "demo-telecom-spares"
        assert row["last_import"]
    shown = fleet_sh(fleet, "1.1.0", "status")
    assert shown.returncode == 0, shown.stdout[-3000:]
    assert "all 3 node(s) alike" in shown.stdout


# Node 2's health gate made to fail: its inventory entry gives the new server no time to
# answer (one try, at once), as on a node too slow for its gate. The server in service is left
# serving by the rescue (it never stopped), whose gate it passes at once.
IMPATIENT = "{appliance_server_health_retries: 0}"


def write_inventory(fleet: dict[str, Node], **entries: str) -> None:
    """The controller's inventory anew, with these nodes' entries (name: YAML flow mapping)."""
    text = inventory(NODES)
    for name, entry in entries.items():
        text = text.replace(f"{name}: {{}}", f"{name}: {entry}")
    fleet[CONTROLLER].sh(
        f"cat > {INVENTORY} <<'EOF'\n{text}EOF\nchown ann:ann {INVENTORY}", check=True
    )


def test_an_upgrade_stops_at_the_node_that_fails_and_that_node_rolls_back(
    fleet: dict[str, Node],
) -> None:
    second = fleet[NODES[1]]
    write_inventory(fleet, **{NODES[1]: IMPATIENT})
    trail_before = {name: len(installer_trail(fleet[name])) for name in NODES}
    result = fleet_sh(fleet, "1.1.0", "install", f"{USB}/appliance-1.1.0.tar")
    assert result.returncode == 4, result.stdout[-4000:] + result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"fleet.sh: error: {NODES[1]}: 1.1.0 failed its health gate; rolled back to 1.0.0"
    ), last
    assert installed_version(fleet[NODES[0]]) == "1.1.0"
    assert installed_version(second) == "1.0.0"
    assert second.http("/health/ready")[0] == 200  # back in service by itself
    assert installer_trail(second)[-1]["action"] == "upgrade-failed"
    third = fleet[NODES[2]]
    assert installed_version(third) == "1.0.0"
    assert len(installer_trail(third)) == trail_before[NODES[2]]  # not reached
    assert third.sh("ls /var/lib/appliance-fleet").stdout.split() == [
        "appliance-1.0.0.tar", "appliance-1.0.0.unpacked", "inputs", "install.sh", "packs", "stage",
    ]  # fmt: skip
    report = status(fleet)
    assert report["differing"] == [NODES[0]]  # the one on 1.1.0, against the two on 1.0.0
    rows = {row["node"]: row for row in report["nodes"]}
    assert rows[NODES[0]]["differs"] == ["software"]


def test_the_rerun_finishes_the_rollout_and_a_second_run_changes_nothing(
    fleet: dict[str, Node],
) -> None:
    write_inventory(fleet)  # node 2 fixed: its gate has its time again
    # Node 3's pack trust as a trust update would leave it: the inventory's file (for a first
    # install) must not undo it.
    third = fleet[NODES[2]]
    third.sh("echo '# rotated on this node' >> /etc/appliance/pack-trust/pack_signers", check=True)
    result = fleet_sh(fleet, "1.1.0", "install", f"{USB}/appliance-1.1.0.tar")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# rotated on this node" in third.sh("cat /etc/appliance/pack-trust/pack_signers").stdout
    batches = []
    for name in NODES:
        assert installed_version(fleet[name]) == "1.1.0"
        assert fleet[name].http("/health/ready")[0] == 200
        event = installer_trail(fleet[name])[-1]
        assert event["action"] in ("upgrade", "reconfigure")
        batches.append(event["fleet"]["batch"])
    assert batches == [[name] for name in NODES]  # one node at a time, by default
    again = fleet_sh(fleet, "1.1.0", "install", f"{USB}/appliance-1.1.0.tar")
    assert again.returncode == 0, again.stdout[-3000:]
    for name in NODES:
        assert recap_of(again.stdout, name)["changed"] == 0, again.stdout[-3000:]
    checked = fleet_sh(fleet, "1.1.0", "install", f"{USB}/appliance-1.1.0.tar", "--check", "--diff")
    assert checked.returncode == 0, checked.stdout[-3000:]
    for name in NODES:
        assert recap_of(checked.stdout, name)["changed"] == 0, checked.stdout[-3000:]
    assert status(fleet)["differing"] == []
