"""A simulated air-gapped node: Debian 12 with systemd and Podman, in a container with no network.

As docs/developing.md describes it: a root filesystem from mmdebstrap (cached in the build
cache), imported as an image, run with systemd as PID 1, `--network none`, and the USB stick
(a host folder of bundles and packs) mounted read-only at /media/usb. Podman inside uses the
vfs storage driver and runc. Used by tests/e2e and benchmarks/bench_install.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NODE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "python3",
    "python3-venv",
    "podman",
    "runc",
    "ca-certificates",
    "openssh-client",
)
HOST_PODMAN = ("podman", "--runtime", "runc")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
USB = "/media/usb"
# Inside the node: Podman stores images with vfs (no overlay inside overlay), runs runc, and
# keeps the limits below the container's hard limits.
STORAGE_CONF = '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n'
CONTAINERS_CONF = '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]\n'
BOOT_SECONDS = 60.0


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "appliance-bundle"


def node_image() -> str:
    """The simulated node's image, made with mmdebstrap and `podman import` the first time."""
    key = hashlib.sha256("\n".join(NODE_PACKAGES).encode()).hexdigest()[:12]
    name = f"localhost/appliance-sim-node:{key}"
    exists = subprocess.run([*HOST_PODMAN, "image", "exists", name], check=False)
    if exists.returncode == 0:
        return name
    folder = cache_dir() / "sim-node" / key
    folder.mkdir(parents=True, exist_ok=True)
    rootfs = folder / "node.tar"
    if not rootfs.exists():
        partial = folder / "node.tar.partial"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(NODE_PACKAGES)}",
                "--format=tar",
                "bookworm",
                str(partial),
            ],
            check=True,
            capture_output=True,
        )
        partial.replace(rootfs)
    subprocess.run(
        [*HOST_PODMAN, "import", "--change", 'CMD ["/sbin/init"]', str(rootfs), name],
        check=True,
        capture_output=True,
    )
    return name


@dataclass
class Node:
    """A running simulated node."""

    name: str

    def sh(
        self, script: str, *, check: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a bash script inside the node as root."""
        result = subprocess.run(
            [*HOST_PODMAN, "exec", self.name, "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result.stderr = "\n".join(
            line for line in result.stderr.splitlines() if "level=warning" not in line
        )
        if check and result.returncode != 0:
            msg = f"in the node: {script!r} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            raise AssertionError(msg)
        return result

    def http(self, path: str, *, port: int = 8080) -> tuple[int, str]:
        """(status, body) of GET http://127.0.0.1:<port><path> from inside the node (0 if refused)."""
        script = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=5)\n"
            "    print(r.status); print(r.read().decode('utf-8', 'replace'))\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode('utf-8', 'replace'))\n"
            "except OSError as e:\n"
            "    print(0); print(e)\n"
        )
        result = self.sh(f"python3 - <<'EOF'\n{script}EOF")
        status, _, body = result.stdout.partition("\n")
        return int(status or 0), body

    def stop(self) -> None:
        subprocess.run(
            [*HOST_PODMAN, "rm", "-f", "-t", "5", self.name], capture_output=True, check=False
        )


def start_node(name: str, usb: Path) -> Node:
    """Boot a fresh simulated node with `usb` mounted read-only at /media/usb; wait for systemd."""
    subprocess.run([*HOST_PODMAN, "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(
        [
            *HOST_PODMAN,
            "run",
            "-d",
            "--name",
            name,
            "--systemd=always",
            "--privileged",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--network",
            "none",
            *LIMITS,
            "-v",
            f"{usb}:{USB}:ro",
            node_image(),
        ],
        check=True,
        capture_output=True,
    )
    node = Node(name)
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        state = node.sh("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    else:
        node.stop()
        msg = f"the simulated node {name} did not boot within {BOOT_SECONDS:.0f}s"
        raise AssertionError(msg)
    node.sh(
        f"mkdir -p /etc/containers && printf '%s' '{STORAGE_CONF}' > /etc/containers/storage.conf"
        f" && printf '%s' '{CONTAINERS_CONF}' > /etc/containers/containers.conf",
        check=True,
    )
    return node
