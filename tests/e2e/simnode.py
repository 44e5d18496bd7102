"""A simulated air-gapped node: Debian with systemd, in a container with no network.

As docs/developing.md describes it: a root filesystem from mmdebstrap (cached in the build
cache), imported as an image, run with systemd as PID 1, `--network none`, and the USB stick
(a host folder of bundles and packs) mounted read-only at /media/usb. A node kind (NODE_KINDS)
says which Debian release, which variant, and which container engine the installer sets up on
it. Used by tests/e2e and benchmarks/bench_install.py.

What each engine needs inside a node (measured by tests/e2e/node_kinds_probe.py on a cgroup v1
hybrid host; every kind boots to `running` in 2-4 s once its image is cached; a first image takes
55-90 s, mostly mmdebstrap):

- Podman (4.3.1 on bookworm with CNI, 5.4.2 on trixie with netavark) needs the vfs driver
  (STORAGE_CONF): it does not fall back from overlay ("not supported over overlayfs"), and
  podman.service, podman-restart.service and podman-auto-update.service, run at boot and (on
  bookworm) by the package's postinst, fail and leave the node degraded; so the file is copied
  in before systemd starts. CONTAINERS_CONF (runc, ulimits) is a guard: podman depends on
  "crun | runc" and crun fails on this host, but the bundle names runc, and containers inherit
  the node's 1024/1000 limits anyway. Neither file is a conffile of Debian's packages (those
  are policy.json, registries.conf.d/shortnames.conf, libpod.conf on bookworm, registries.conf
  on trixie), so dpkg installs Podman over them without a prompt: --force-confold is not
  needed for them (appliance_debs passes it anyway), and a purge leaves them.
- Docker (20.10.24 on bookworm, 26.1.5 on trixie): nothing is needed. dockerd tries overlay2,
  fails, and falls back to vfs by itself; daemon.json sets vfs only so that both engines store
  images alike and the journal holds no overlay errors. Its containers inherit the node's
  1024/1000 limits (systemd cannot raise LimitNOFILE=infinity past them), so no default-ulimits.
  docker0 and its iptables-nft rules live in the node's own network namespace: the bridge works
  with `--network none` outside. On trixie the docker command is in docker-cli, a Recommends of
  docker.io: with --no-install-recommends it must be named.
- Both: iptables is iptables-nft; cgroups v1 with --cgroupns=host (Podman's systemd manager,
  docker's cgroupfs); the server's flags (--network host --read-only --user --cap-drop ALL
  --cpus --memory --pids-limit) work; a docker-archive from bundle/oci.py loads in either.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.bundles.bundle_layout import NODE_TARGETS

HOST_PODMAN = ("podman", "--runtime", "runc")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
USB = "/media/usb"
BOOT_SECONDS = 60.0
IMAGE_REPOSITORY = "localhost/appliance-sim-node"
KINDS_VARIABLE = "APPLIANCE_NODE_KINDS"
DEFAULT_KINDS = ("debian12-standard", "debian13-standard", "debian13-docker")

# What the simulation adds that a real node would not need, copied in before systemd starts so
# that the engine's units and packages find it (see above). Podman: vfs (no overlay on overlay),
# runc (crun refuses the host's cgroup setup), limits below the container's hard limits.
STORAGE_CONF = '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n'
CONTAINERS_CONF = '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]\n'
PODMAN_CONFIG = {
    "/etc/containers/storage.conf": STORAGE_CONF,
    "/etc/containers/containers.conf": CONTAINERS_CONF,
}
DOCKER_DAEMON_JSON = '{\n  "storage-driver": "vfs"\n}\n'
DOCKER_CONFIG = {"/etc/docker/daemon.json": DOCKER_DAEMON_JSON}
SIMULATION_CONFIG = {"podman": PODMAN_CONFIG, "docker": DOCKER_CONFIG}

MINBASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "python3",
    "python3-venv",
    "podman",
    "runc",
    "ca-certificates",
    "openssh-client",
)
# trixie's systemd loads libkmod at run time and netavark runs nft: minbase has neither (a real
# install has both, priority important), so the node would boot degraded and Podman's default
# network would fail.
TRIXIE_MINBASE_PACKAGES = (*MINBASE_PACKAGES, "kmod", "nftables")
STANDARD_PACKAGES = ("systemd-sysv",)
# A node of a fleet is reached over SSH by an admin who may use sudo: a netinst with "SSH server"
# ticked, and sudo. The controller is such a node too (one node acting as controller).
FLEET_PACKAGES = (*STANDARD_PACKAGES, "openssh-server", "sudo")


@dataclass(frozen=True)
class NodeKind:
    """One kind of simulated node: a Debian release, how it was installed, and its engine."""

    name: str
    codename: str  # bookworm, trixie
    variant: str  # mmdebstrap's --variant: minbase (a trimmed node) or standard (a netinst)
    include: tuple[str, ...]  # mmdebstrap's --include
    engine: str  # podman or docker: the engine the installer sets up (install.sh --engine)
    description: str

    @property
    def target(self) -> str:
        """The bundle's node target for this release (debian12, debian13)."""
        return next(t.name for t in NODE_TARGETS if t.codename == self.codename)

    @property
    def preinstalled(self) -> bool:
        """Whether the engine is on the node already (else the installer brings it)."""
        return self.engine in self.include

    @property
    def sources(self) -> tuple[str, ...]:
        """The apt sources of a real install: the release, its updates and its security updates."""
        return (
            f"deb http://deb.debian.org/debian {self.codename} main",
            f"deb http://deb.debian.org/debian {self.codename}-updates main",
            f"deb http://deb.debian.org/debian-security {self.codename}-security main",
        )

    @property
    def image_key(self) -> str:
        """A hash of what makes the root filesystem: kinds that differ only in engine share it."""
        definition = "\n".join([self.codename, self.variant, ",".join(self.include), *self.sources])
        return hashlib.sha256(definition.encode()).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.image_key}"


def _kinds(*kinds: NodeKind) -> dict[str, NodeKind]:
    return {kind.name: kind for kind in kinds}


NODE_KINDS = _kinds(
    NodeKind(
        "debian12",
        "bookworm",
        "minbase",
        MINBASE_PACKAGES,
        "podman",
        "Debian 12 minbase with python3-venv and Podman installed (the original simulated node)",
    ),
    NodeKind(
        "debian13",
        "trixie",
        "minbase",
        TRIXIE_MINBASE_PACKAGES,
        "podman",
        "Debian 13 minbase with python3-venv and Podman installed (and kmod and nftables)",
    ),
    NodeKind(
        "debian12-standard",
        "bookworm",
        "standard",
        STANDARD_PACKAGES,
        "podman",
        "Debian 12 as a netinst with standard system utilities: the bundle brings python3-venv and Podman",
    ),
    NodeKind(
        "debian13-standard",
        "trixie",
        "standard",
        STANDARD_PACKAGES,
        "podman",
        "Debian 13 as a netinst with standard system utilities: the bundle brings python3-venv and Podman",
    ),
    NodeKind(
        "debian13-fleet",
        "trixie",
        "standard",
        FLEET_PACKAGES,
        "podman",
        "Debian 13 standard with an SSH server and sudo, a node of a fleet (tests/e2e/test_fleet.py)",
    ),
    NodeKind(
        "debian12-docker",
        "bookworm",
        "standard",
        STANDARD_PACKAGES,
        "docker",
        "Debian 12 standard, installed with --engine docker: the bundle brings python3-venv and docker.io",
    ),
    NodeKind(
        "debian13-docker",
        "trixie",
        "standard",
        STANDARD_PACKAGES,
        "docker",
        "Debian 13 standard, installed with --engine docker: the bundle brings python3-venv and docker.io",
    ),
)


def kinds_from_env() -> list[NodeKind]:
    """The node kinds named in APPLIANCE_NODE_KINDS (comma-separated; `all` for every kind), or
    DEFAULT_KINDS."""
    text = os.environ.get(KINDS_VARIABLE, "")
    names = [name.strip() for name in text.split(",") if name.strip()] or list(DEFAULT_KINDS)
    if names == ["all"]:
        names = list(NODE_KINDS)
    unknown = [name for name in names if name not in NODE_KINDS]
    if unknown:
        msg = f"{KINDS_VARIABLE}: unknown node kind {', '.join(unknown)} (known: {', '.join(NODE_KINDS)})"
        raise ValueError(msg)
    return [NODE_KINDS[name] for name in dict.fromkeys(names)]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "appliance-bundle"


def node_image(kind: NodeKind = NODE_KINDS["debian12"]) -> str:
    """The kind's image, made with mmdebstrap and `podman import` the first time."""
    name = kind.image
    exists = subprocess.run([*HOST_PODMAN, "image", "exists", name], check=False)
    if exists.returncode == 0:
        return name
    folder = cache_dir() / "sim-node" / kind.image_key
    folder.mkdir(parents=True, exist_ok=True)
    rootfs = folder / "node.tar"
    if not rootfs.exists():
        # Another test run may be building the same tar: each writes its own partial file.
        partial = folder / f"node.tar.partial-{os.getpid()}"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                f"--variant={kind.variant}",
                f"--include={','.join(kind.include)}",
                "--format=tar",
                kind.codename,
                str(partial),
                *kind.sources,
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
    kind: NodeKind = NODE_KINDS["debian12"]

    @property
    def engine(self) -> str:
        """The node's container engine command: podman or docker."""
        return self.kind.engine

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


def start_node(
    name: str, usb: Path, kind: NodeKind = NODE_KINDS["debian12"], *, network: str = "none"
) -> Node:
    """Boot a fresh node of `kind` with `usb` mounted read-only at /media/usb; wait for systemd.

    The engine's simulation config (SIMULATION_CONFIG) is copied in before systemd starts: the
    engine's units that run at boot, and its packages if the installer brings them, find it.
    `network` is none (air-gapped alone) or the name of an `--internal` Podman network (a
    fleet: the nodes reach each other by name, and nothing else); the node's hostname is `name`.
    """
    subprocess.run([*HOST_PODMAN, "rm", "-f", name], capture_output=True, check=False)
    subprocess.run(
        [
            *HOST_PODMAN,
            "create",
            "--name",
            name,
            "--systemd=always",
            "--privileged",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--network",
            network,
            *(("--hostname", name) if network != "none" else ()),
            *LIMITS,
            "-v",
            f"{usb}:{USB}:ro",
            node_image(kind),
        ],
        check=True,
        capture_output=True,
    )
    node = Node(name, kind)
    with tempfile.TemporaryDirectory(prefix="simnode-config-") as tree:
        for path, text in SIMULATION_CONFIG[kind.engine].items():
            target = Path(tree, path.lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        subprocess.run(
            [*HOST_PODMAN, "cp", f"{tree}/.", f"{name}:/"], check=True, capture_output=True
        )
    subprocess.run([*HOST_PODMAN, "start", name], check=True, capture_output=True)
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
    return node
