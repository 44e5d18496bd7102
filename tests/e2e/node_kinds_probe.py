"""Probe: does each node kind's engine run inside the simulated node? (findings atop simnode.py)

    .venv/bin/python -m tests.e2e.node_kinds_probe [--bare] [KIND ...]

For each kind: build its image; fetch the .debs the installer would bring (python3-venv and the
engine's packages, bundle_layout.ENGINE_PACKAGES) with `apt-get install --download-only
--no-install-recommends` in a throwaway container of the same image, the only step with a
network; boot the node with `--network none` and those .debs and a busybox image archive on its
stick; `apt-get install --no-install-recommends` them with stdin closed (a conffile prompt would
fail it); then check the engine's service, `load` and `run` (plain, as the server runs, and on
the default bridge), and `python3 -m venv`. `--bare` removes the simulation's engine config
before the engine is installed, to see what it does without. Needs the host's podman, runc, mmdebstrap
and network; prints one report per kind and leaves no container behind.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.bundles.bundle_layout import ENGINE_PACKAGES, NODE_BASE_PACKAGES
from bundle import oci
from tests.e2e.simnode import (
    HOST_PODMAN,
    LIMITS,
    NODE_KINDS,
    SIMULATION_CONFIG,
    USB,
    Node,
    NodeKind,
    node_image,
    start_node,
)

IMAGE = "localhost/probe-busybox:1"
IMAGE_FILE = "busybox.tar"
SOURCE_DATE_EPOCH = 1_700_000_000
# trixie's docker.io leaves the docker command to docker-cli, a Recommends that
# --no-install-recommends drops (bookworm's docker.io has it); bundle_layout does not say so yet.
EXTRA_PACKAGES = {("trixie", "docker"): ("docker-cli",)}
# The server's own flags (ansible/roles/appliance_server/templates/appliance-server.service.j2).
SERVER_FLAGS = (
    "--network host --read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m,mode=1777"
    " --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges"
    " --cpus 1 --memory 256m --pids-limit 100"
)


def image_archive(folder: Path) -> Path:
    """A busybox-static image written by bundle/oci.py: the archive format the bundle ships."""
    work = folder / "busybox"
    work.mkdir()
    subprocess.run(["apt-get", "download", "-q", "busybox-static"], cwd=work, check=True)
    deb = next(work.glob("busybox-static_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
    entries = [oci.file("bin/busybox", work / "x" / "bin" / "busybox", 0o755)]
    layer = oci.write_layer(entries, work / "layer.tar", SOURCE_DATE_EPOCH)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/busybox"]}}
    archive = folder / IMAGE_FILE
    oci.write_image_archive(archive, [layer], config, IMAGE, SOURCE_DATE_EPOCH)
    return archive


def fetch_debs(kind: NodeKind, folder: Path) -> list[str]:
    """The .debs the node lacks for its engine and python3-venv, fetched into `folder`."""
    extra = EXTRA_PACKAGES.get((kind.codename, kind.engine), ())
    wanted = [*NODE_BASE_PACKAGES, *ENGINE_PACKAGES[kind.engine], *extra]
    (folder / "partial").mkdir(parents=True, exist_ok=True)
    script = (
        "apt-get update -qq && apt-get install -qq -y --download-only --no-install-recommends"
        f" -o Dir::Cache::archives=/out {' '.join(wanted)}"
    )
    run = [*HOST_PODMAN, "run", "--rm", *LIMITS, "-v", f"{folder}:/out", node_image(kind)]
    subprocess.run(
        [*run, "bash", "-c", script],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(folder / "partial")
    return sorted(path.name for path in folder.glob("*.deb"))


def step(node: Node, title: str, script: str, timeout: float = 600) -> bool:
    started = time.monotonic()
    result = node.sh(script, timeout=timeout)
    took = time.monotonic() - started
    mark = "ok " if result.returncode == 0 else f"rc={result.returncode}"
    print(f"  [{mark}] {title} ({took:.1f}s)")
    for line in (result.stdout + "\n" + result.stderr).strip().splitlines()[-12:]:
        print(f"        {line}")
    return result.returncode == 0


def probe(kind: NodeKind, folder: Path, archive: Path, *, bare: bool) -> None:
    print(f"== {kind.name}: {kind.description}")
    started = time.monotonic()
    node_image(kind)
    print(f"  image {kind.image} ({time.monotonic() - started:.0f}s)")
    usb = folder / kind.name
    usb.mkdir()
    debs = [] if kind.preinstalled else fetch_debs(kind, usb)
    shutil.copy(archive, usb / IMAGE_FILE)
    usb.chmod(0o755)
    size = sum((usb / name).stat().st_size for name in debs) / 1e6
    print(f"  {len(debs)} debs, {size:.1f} MB")
    started = time.monotonic()
    node = start_node(f"probe-{kind.name}", usb, kind)
    try:
        print(f"  booted in {time.monotonic() - started:.1f}s (node_image cached)")
        step(node, "os", ". /etc/os-release; echo $PRETTY_NAME; ulimit -Sn -Hn; ulimit -Hu")
        if bare:
            paths = " ".join(SIMULATION_CONFIG[kind.engine])
            step(node, "remove the simulation config", f"rm -v {paths}")
        step(node, "config before", "ls -l /etc/containers /etc/docker 2>&1; true")
        if debs:
            step(
                node,
                "apt-get install (offline, stdin closed, no --force-confold)",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends"
                f" {USB}/*.deb </dev/null 2>&1 | tail -n 5; exit ${{PIPESTATUS[0]}}",
            )
        step(
            node,
            "conffiles of the engine's packages",
            "cat /var/lib/dpkg/info/{podman,golang-github-containers-common,containers-common,"
            "containers-storage,docker.io,containerd,runc}.conffiles 2>/dev/null; true",
        )
        step(node, "config after", "head -n 20 /etc/containers/*.conf /etc/docker/* 2>&1; true")
        step(node, "python3 -m venv", "python3 -m venv /tmp/v && /tmp/v/bin/python -V")
        step(
            node, "iptables", "iptables --version; update-alternatives --display iptables | head -3"
        )
        engine = kind.engine
        if engine == "docker":
            step(node, "services", "systemctl is-active docker containerd docker.socket")
            step(
                node,
                "docker info",
                "docker version --format '{{.Server.Version}}' && docker info --format"
                " 'driver={{.Driver}} cgroup={{.CgroupVersion}}/{{.CgroupDriver}}"
                " runtime={{.DefaultRuntime}} warnings={{.Warnings}}'",
            )
            step(node, "dockerd journal", "journalctl -b -u docker --no-pager | tail -n 12")
            step(
                node,
                "daemon limits",
                "grep -h 'open files\\|processes' /proc/$(pidof dockerd)/limits"
                " /proc/$(pidof containerd)/limits",
            )
        else:
            step(
                node,
                "podman info",
                "podman version --format '{{.Version}}' && podman info --format"
                " 'driver={{.Store.GraphDriverName}} runtime={{.Host.OCIRuntime.Name}}"
                " cgroup={{.Host.CgroupsVersion}}/{{.Host.CgroupManager}}"
                " network={{.Host.NetworkBackend}}'",
            )
        step(node, f"{engine} load", f"{engine} load -i {USB}/{IMAGE_FILE}")
        step(node, f"{engine} run", f"{engine} run --rm {IMAGE} /bin/busybox echo hi")
        step(
            node,
            f"{engine} run as the server runs",
            f"{engine} run --rm {SERVER_FLAGS} {IMAGE} /bin/busybox sh -c 'id -u; ulimit -n'",
        )
        step(
            node,
            f"{engine} run on the default bridge",
            f"{engine} run --rm {IMAGE} /bin/busybox ip -4 -o addr",
        )
        step(node, f"{engine} images", f"{engine} images")
        step(node, "failed units", "systemctl --failed --no-legend; systemctl is-system-running")
    finally:
        node.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", action="store_true", help="without the simulation's config")
    parser.add_argument("kinds", nargs="*", default=list(NODE_KINDS), help="node kinds")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="node-kinds-probe-") as tmp:
        folder = Path(tmp)
        archive = image_archive(folder)
        for name in options.kinds:
            probe(NODE_KINDS[name], folder, archive, bare=options.bare)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
