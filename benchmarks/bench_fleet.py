"""A fleet's figures: three simulated nodes installed and upgraded rolling over SSH, with load.

On three fresh debian13-fleet nodes and a controller on an internal network
(tests/e2e/fleet_nodes.py), the operator runs, from the controller, with the bundles' own
fleet.sh (Ansible set up from the wheels):

- rolling install: `fleet.sh install appliance-1.0.0.tar`, one node at a time (the default),
  from its start to its end, after the last node passed its health gate;
- rolling upgrade: `fleet.sh install appliance-1.1.0.tar`, one node at a time, while clients on
  each node (tests/e2e/availability.py: three pollers, each a new connection every 50 ms to
  /health/startup) count the requests that failed and the longest a request waited;
- second run: the same upgrade again, which changes nothing.

The peer is the same install on one node by `install.sh` run on that node (the controller,
after the fleet runs): what driving the install over SSH from a controller adds per node.
Prints a Markdown table.

    python benchmarks/bench_fleet.py [--workdir .bench/fleet]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.trust.sshsig import generate_key  # noqa: E402
from bundle import layout  # noqa: E402
from tests.e2e.availability import POLLERS, start_polling, stop_polling  # noqa: E402
from tests.e2e.fleet_nodes import Fleet, running_fleet  # noqa: E402
from tests.e2e.simnode import USB  # noqa: E402
from tests.integration.conftest import build_command, build_env  # noqa: E402

VERSIONS = ("1.0.0", "1.1.0")
NETWORK = "appliance-fleet-bench"
NODES = ("bench-fleet-1", "bench-fleet-2", "bench-fleet-3")
CONTROLLER = "bench-fleet-controller"
PROBE = "http://127.0.0.1:8080/health/startup"


def build_once(version: str, key: Path, out: Path) -> None:
    """build_bundle.py of `version` into `out`, unless an earlier run left it there."""
    if not (out / layout.archive_name(version)).exists():
        command = build_command(version, key, out, "--skip-engine-check")
        subprocess.run(command, check=True, env=build_env(), capture_output=True)


def timed_fleet(fleet: Fleet, version: str, *args: str) -> float:
    started = time.perf_counter()
    result = fleet.fleet_sh(version, *args)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(
            f"error: fleet.sh {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "fleet")
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    stick = workdir / "usb"
    stick.mkdir(parents=True, exist_ok=True)
    key = workdir / "release.key"
    if not key.exists():
        generate_key(key, "bench@localhost")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    for version in VERSIONS:
        build_once(version, key, stick)
    keys = workdir / "ssh"
    subprocess.run(["rm", "-rf", str(keys)], check=True)
    keys.mkdir()
    first, second = (f"{USB}/appliance-{version}.tar" for version in VERSIONS)
    with running_fleet(stick, keys, NETWORK, NODES, CONTROLLER, VERSIONS) as fleet:
        trust = f"-e appliance_fleet_trust_fingerprint={fingerprint}"
        install = timed_fleet(fleet, VERSIONS[0], "install", first, trust)
        for node in fleet.nodes.values():
            start_polling(node, PROBE)
        upgrade = timed_fleet(fleet, VERSIONS[1], "install", second)
        load = {name: stop_polling(node) for name, node in fleet.nodes.items()}
        again = timed_fleet(fleet, VERSIONS[1], "install", second)
        peer_started = time.perf_counter()
        fleet.controller.sh(
            f"mkdir -p /var/tmp/b && tar -xf {first} -C /var/tmp/b && "
            f"cd /var/tmp/b/appliance-{VERSIONS[0]} && ./install.sh --trust-fingerprint {fingerprint}",
            check=True,
            timeout=900,
        )
        peer = time.perf_counter() - peer_started

    print("One run on fresh simulated nodes (debian13-fleet), one node at a time; seconds\n")
    print("| step | 3 nodes rolling over SSH | per node | peer: install.sh on the node |")
    print("|---|---:|---:|---:|")
    print(f"| install {VERSIONS[0]} | {install:.1f} | {install / 3:.1f} | {peer:.1f} |")
    print(f"| upgrade to {VERSIONS[1]} | {upgrade:.1f} | {upgrade / 3:.1f} | - |")
    print(f"| second run (changes nothing) | {again:.1f} | {again / 3:.1f} | - |")
    print(
        f"\nDuring the rolling upgrade, {POLLERS} clients on each node, each a new connection "
        f"every 50 ms to {PROBE}:\n"
    )
    print("| node | requests | failed | longest wait of a request that succeeded (s) |")
    print("|---|---:|---:|---:|")
    for name, row in load.items():
        wait = row["longest_wait_seconds"]
        print(f"| {name} | {row['requests']} | {row['failures']} | {wait:.2f} |")


if __name__ == "__main__":
    main()
