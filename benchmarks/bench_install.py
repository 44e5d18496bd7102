"""The installer's figures on simulated air-gapped nodes, against the bare floor in the same run.

For each node kind (tests/e2e/simnode.py NODE_KINDS: Debian 12 or 13, minbase with Podman or a
standard installation, Podman or Docker; systemd, no network) and each run, on a fresh node:

- install: `install.sh` from its start to its end, which is after the server passed its health
  gate (on a standard node: the engine and python3-venv from the bundle's .debs; then the venv
  from wheels/, image load, units, health gate);
- second run: `install.sh` again, which changes nothing;
- upgrade availability: while upgrading to the next version, POLLERS clients inside the node
  (tests/e2e/availability.py: each a GET of /health/startup every 50 ms on a new connection, a
  bounded load) count the requests that failed and the longest one a request waited;

The peer is the bare floor on another fresh node of a kind with the engine preinstalled: `podman
load` of the same image and `podman run` until the healthcheck passes, with no verification,
venv or systemd. Prints a Markdown table.

    python benchmarks/bench_install.py [--runs 3] [--kinds debian12,debian13-standard,...]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.trust.sshsig import generate_key  # noqa: E402
from bundle import layout  # noqa: E402
from tests.e2e.availability import POLLERS, start_polling, stop_polling  # noqa: E402
from tests.e2e.simnode import DEFAULT_KINDS, NODE_KINDS, USB, Node, NodeKind, start_node  # noqa: E402
from tests.integration.conftest import build_command, build_env  # noqa: E402

VERSIONS = ("1.0.0", "1.1.0")


def build(version: str, key: Path, out: Path) -> None:
    if not (out / layout.archive_name(version)).exists():
        command = build_command(version, key, out, "--skip-engine-check")
        subprocess.run(command, check=True, env=build_env(), capture_output=True)


def timed(node: Node, script: str) -> float:
    started = time.perf_counter()
    result = node.sh(script)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {script!r} failed: {result.stderr.strip().splitlines()[-1:]}")
    return elapsed


def unpack(node: Node, version: str) -> str:
    node.sh(
        f"mkdir -p /var/tmp/b && tar -xf {USB}/appliance-{version}.tar -C /var/tmp/b", check=True
    )
    return f"/var/tmp/b/appliance-{version}"  # noqa: S108 (inside the simulated node)


def one_run(stick: Path, fingerprint: str, kind: NodeKind) -> dict[str, float]:
    node = start_node("appliance-bench-node", stick, kind)
    engine = "--engine docker" if kind.engine == "docker" else ""
    try:
        first = unpack(node, VERSIONS[0])
        install = timed(
            node, f"cd {first} && ./install.sh --trust-fingerprint {fingerprint} {engine}"
        )
        second = timed(node, f"cd {first} && ./install.sh")
        upgrade_dir = unpack(node, VERSIONS[1])
        start_polling(node, "http://127.0.0.1:8080/health/startup")
        upgrade = timed(node, f"cd {upgrade_dir} && ./install.sh")
        report = stop_polling(node)
    finally:
        node.stop()
    return {
        "install": install,
        "second": second,
        "upgrade": upgrade,
        "requests": report["requests"],
        "failures": report["failures"],
        "wait": report["longest_wait_seconds"],
    }


def floor_run(stick: Path, kind: NodeKind) -> float:
    """podman load + podman run until healthy, on a fresh node: no checks, no venv, no systemd."""
    node = start_node("appliance-bench-floor", stick, kind)
    try:
        folder = unpack(node, VERSIONS[0])
        script = (
            f"podman load -q -i {folder}/{layout.SERVER_IMAGE_FILE} >/dev/null && "
            "mkdir -p /var/lib/appliance && chown 10001:10001 /var/lib/appliance && "
            "podman run -d --name floor --network host --read-only --tmpfs /tmp "
            f"-v /var/lib/appliance:/var/lib/appliance {layout.SERVER_IMAGE_NAME}:{VERSIONS[0]} >/dev/null && "
            "until python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/startup')\" 2>/dev/null; do sleep 0.1; done"
        )
        return timed(node, script)
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "install")
    parser.add_argument(
        "--kinds",
        default=",".join(("debian12", "debian13", *DEFAULT_KINDS)),
        help=f"node kinds, comma-separated (known: {', '.join(NODE_KINDS)})",
    )
    args = parser.parse_args()
    kinds = [NODE_KINDS[name] for name in args.kinds.split(",")]
    stick: Path = args.workdir.resolve() / "usb"
    stick.mkdir(parents=True, exist_ok=True)
    key = args.workdir.resolve() / "release.key"
    if not key.exists():
        generate_key(key, "bench@localhost")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    for version in VERSIONS:
        build(version, key, stick)
    runs = {
        kind.name: [one_run(stick, fingerprint, kind) for _ in range(args.runs)] for kind in kinds
    }
    floors = {
        kind.name: [floor_run(stick, kind) for _ in range(args.runs)]
        for kind in kinds
        if kind.preinstalled and kind.engine == "podman"
    }

    def cell(values: list[float], digits: int = 1) -> str:
        low, middle, high = min(values), statistics.median(values), max(values)
        return f"{middle:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"

    print(f"{args.runs} runs each on a fresh simulated node; median (min-max), seconds\n")
    print(
        "| node kind | install.sh start to healthy (goal <= 120) | bare floor (podman load + run) "
        f"| upgrade: failed of requests ({POLLERS} clients) | upgrade: longest wait "
        "| second run (changes nothing) | upgrade, whole install.sh |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, results in runs.items():
        floor = cell(floors[name]) if name in floors else "-"
        print(
            f"| {name} | {cell([r['install'] for r in results])} | {floor} "
            f"| {sum(r['failures'] for r in results):.0f} of {sum(r['requests'] for r in results):.0f} "
            f"| {cell([r['wait'] for r in results], 2)} | {cell([r['second'] for r in results])} "
            f"| {cell([r['upgrade'] for r in results])} |"
        )
    shutil.rmtree(args.workdir.resolve() / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
