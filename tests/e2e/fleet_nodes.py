"""A simulated fleet: nodes and a controller on an internal Podman network, for tests and benchmarks.

The network is `--internal`: the machines reach each other by name and nothing else. The nodes
are Debian 13 standard installations with an SSH server and sudo (node kind debian13-fleet);
the admin account `ops` logs in with a key made for the run and becomes root with sudo. The
controller is such a node too, with no Ansible: the operator `ann` runs `fleet.sh` from the
unpacked bundles (in /var/tmp/ctl), which sets Ansible up from the bundle's wheels.
tests/e2e/test_fleet.py and benchmarks/bench_fleet.py use it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.simnode import HOST_PODMAN, NODE_KINDS, USB, Node, start_node

KIND = NODE_KINDS["debian13-fleet"]
INVENTORY = "/home/ann/fleet.yml"
TOOL = "/var/tmp/ctl/appliance-{version}/fleet.sh"
FLEET_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Fleet:
    """The machines of a running fleet, by name."""

    nodes: dict[str, Node]
    controller: Node

    def __getitem__(self, name: str) -> Node:
        return self.controller if name == self.controller.name else self.nodes[name]

    def fleet_sh(self, version: str, *args: str) -> subprocess.CompletedProcess[str]:
        """fleet.sh of `version`'s unpacked bundle on the controller, as the operator ann."""
        command = " ".join([TOOL.format(version=version), *args, "-i", INVENTORY])
        return self.controller.sh(f"cd /home/ann && su ann -c '{command}'", timeout=FLEET_TIMEOUT)


def inventory(nodes: Sequence[str]) -> str:
    """The inventory: the example's shape (a region, two sites), the first two nodes in one site."""
    first, rest = nodes[:2], nodes[2:]
    sites = f"        site_a:\n          hosts:\n{host_lines(first)}"
    if rest:
        sites += f"        site_b:\n          hosts:\n{host_lines(rest)}"
    return (
        "all:\n  vars:\n    ansible_user: ops\n    ansible_become: true\n"
        "    ansible_python_interpreter: /usr/bin/python3\n"
        "    appliance_server_health_retries: 30\n"
        f"  children:\n    region_test:\n      children:\n{sites}"
    )


def host_lines(names: Sequence[str]) -> str:
    return "".join(f"            {name}: {{}}\n" for name in names)


@contextmanager
def running_fleet(
    stick: Path,
    keys: Path,
    network: str,
    nodes: Sequence[str],
    controller: str,
    versions: Sequence[str],
) -> Iterator[Fleet]:
    """Start the network, the nodes and the controller (with `versions` unpacked); stop them after."""
    subprocess.run([*HOST_PODMAN, "network", "rm", "-f", network], capture_output=True, check=False)
    subprocess.run([*HOST_PODMAN, "network", "create", "--internal", network], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ann@{controller}",
                    "-f", str(keys / "id_ed25519")], check=True)  # fmt: skip
    public = (keys / "id_ed25519.pub").read_text().strip()
    started: dict[str, Node] = {}
    try:
        for name in (*nodes, controller):
            started[name] = start_node(name, stick, KIND, network=network)
        for name in nodes:
            started[name].sh(
                "useradd -m -s /bin/bash ops && echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops && "
                "chmod 0440 /etc/sudoers.d/ops && install -d -m 0700 -o ops -g ops /home/ops/.ssh && "
                f"echo '{public}' > /home/ops/.ssh/authorized_keys && "
                "chown ops:ops /home/ops/.ssh/authorized_keys && chmod 0600 /home/ops/.ssh/authorized_keys && "
                # Each node its own host keys (the image's are the same on every node).
                "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && systemctl restart ssh",
                check=True,
            )
        private = (keys / "id_ed25519").read_text()
        started[controller].sh(
            "useradd -m -s /bin/bash ann && install -d -m 0700 -o ann -g ann /home/ann/.ssh && "
            f"cat > /home/ann/.ssh/id_ed25519 <<'EOF'\n{private}EOF\n"
            "chmod 0600 /home/ann/.ssh/id_ed25519 && "
            f"ssh-keyscan -t ed25519 {' '.join(nodes)} > /home/ann/.ssh/known_hosts 2>/dev/null && "
            "chown -R ann:ann /home/ann/.ssh && "
            f"cat > {INVENTORY} <<'EOF'\n{inventory(nodes)}EOF\nchown ann:ann {INVENTORY}",
            check=True,
        )
        for version in versions:
            started[controller].sh(
                f"mkdir -p /var/tmp/ctl && tar -xf {USB}/appliance-{version}.tar -C /var/tmp/ctl",
                check=True,
            )
        yield Fleet({name: started[name] for name in nodes}, started[controller])
    finally:
        for node in started.values():
            node.stop()
        subprocess.run([*HOST_PODMAN, "network", "rm", "-f", network], capture_output=True,
                       check=False)  # fmt: skip
