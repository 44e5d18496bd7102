"""The support bundle: what an operator carries off a node on a stick when something is wrong.

A site with no network gives no one remote access; this archive is what leaves the node. It
holds the node's facts (CPU, memory, disks, release, engine and Python versions), what is
installed and its trail, the data store's versions and audit trail with their checks, the
server's health and metrics when it answers, the appliance units' journal for a window, the
container's inspect, the settings, the inbox refusals, and a README.txt saying what is inside
and what could not be had. Every section is gathered on its own: a server that is down, a
damaged data dir or a missing command leaves a note in the README, never a failed bundle.

No secret leaves the node: the archive never takes the token files, the TLS key or the tokens
store; every text that goes in is scrubbed of the secrets the node holds (the admin and viewer
token files' contents, any private key block) and of the values of settings whose names say
they are secret (`*TOKEN*`, `*PASSWORD*`, `*SECRET*`, ...; environment values in the
container's inspect too).

Standard library only: `install.sh --support-bundle` runs it from the bundle's appliance wheel
on a node whose install failed, before (or without) any environment of the appliance's.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "appliance-support-bundle/1"
# The node's folders, as ansible/group_vars/all.yml has them (tests/unit/test_support_bundle.py
# compares): each may be moved by the environment variable install.sh also reads.
CONFIG_DIR = "/etc/appliance"
DATA_DIR = "/var/lib/appliance"
LOG_DIR = "/var/log/appliance"
ROOT_DIR = "/opt/appliance"
INSTALLED_FILE = "installed.json"
ENGINE_FILE = "engine"
SERVER_ENV = "server.env"
INSTALLER_TRAIL = "installer.jsonl"
DATA_HISTORY = "history.jsonl"
INBOX_DIRS = ("/srv/appliance/inbox",)  # appliance_importer_inbox_dirs' default
REJECTED_DIR = "rejected"  # appliance/data/watch.py REJECTED_DIR
REASON_SUFFIX = ".reason.txt"  # appliance/data/watch.py REASON_SUFFIX
UNITS = ("appliance-server.service", "appliance-importer.service")
CONTAINER = "appliance-server"
DEFAULT_PORT = 8080
# Files of the configuration folder that are secret: never read into the bundle but to scrub.
SECRET_FILES = ("admin.token", "viewer.token", "tls.key", "tls.key.brought")
SECRET_NAME = re.compile(
    r"(TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE|API_?KEY)", re.IGNORECASE
)
PRIVATE_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL
)
ASSIGNMENT = re.compile(
    r"^(\s*(?:export\s+|Environment=)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.MULTILINE
)
REDACTED = "<redacted>"
COMMAND_TIMEOUT = 60.0
HTTP_TIMEOUT = 5.0
MIN_SECRET = 8  # shorter file contents are not searched for (they would blank common words)


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps what the bundle reads (the defaults, or the environment's)."""

    config: Path = Path(CONFIG_DIR)
    data: Path = Path(DATA_DIR)
    logs: Path = Path(LOG_DIR)
    root: Path = Path(ROOT_DIR)
    inboxes: tuple[Path, ...] = tuple(Path(p) for p in INBOX_DIRS)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> NodePaths:
        env = dict(os.environ if env is None else env)
        inboxes = env.get("APPLIANCE_INBOX_DIRS", "")
        return cls(
            config=Path(env.get("APPLIANCE_CONFIG_DIR", CONFIG_DIR)),
            data=Path(env.get("APPLIANCE_DATA_DIR", DATA_DIR)),
            logs=Path(env.get("APPLIANCE_LOG_DIR", LOG_DIR)),
            root=Path(env.get("APPLIANCE_ROOT", ROOT_DIR)),
            inboxes=tuple(Path(p) for p in inboxes.split(":") if p) or cls.inboxes,
        )


@dataclass(frozen=True)
class BundleOptions:
    since: str = "24 hours ago"  # journalctl --since
    lines: int = 500  # of each trail and log
    port: int | None = None  # the server's; from server.env when None


@dataclass
class SupportBundle:
    """The archive's members as they are gathered, and a note for each section that failed."""

    members: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def add_text(self, name: str, text: str) -> None:
        self.members[name] = scrub(text, self.secrets).encode("utf-8")

    def add_json(self, name: str, value: object) -> None:
        self.add_text(name, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def section(self, what: str, gather: Callable[[], None]) -> None:
        """Run one section; anything it cannot do is a note, and the others go on."""
        try:
            gather()
        except Exception as exc:  # noqa: BLE001 (each section is independent: a note, never a failed bundle)
            self.notes.append(f"{what}: {type(exc).__name__}: {scrub(str(exc), self.secrets)}")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without private key blocks, secret settings' values, or any of `secrets`."""
    text = PRIVATE_BLOCK.sub(f"{REDACTED} private key", text)

    def assignment(match: re.Match[str]) -> str:
        prefix, name, _value = match.groups()
        return f"{prefix}{name}={REDACTED}" if SECRET_NAME.search(name) else match.group(0)

    text = ASSIGNMENT.sub(assignment, text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def node_secrets(paths: NodePaths, env: dict[str, str]) -> tuple[str, ...]:
    """The secret values this node holds: token files' contents and secret settings' values."""
    found: list[str] = []
    for name in SECRET_FILES:
        try:
            text = (paths.config / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found.extend(line.strip() for line in text.splitlines())
    for name, value in env.items():
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            found.append(value.strip())
    try:
        server_env = (paths.config / SERVER_ENV).read_text(encoding="utf-8", errors="replace")
    except OSError:
        server_env = ""
    for _prefix, name, value in ASSIGNMENT.findall(server_env):
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            found.append(value.strip().strip("'\""))
    return tuple(s for s in found if len(s) >= MIN_SECRET and "BEGIN" not in s)


def run(argv: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    """A command's output (stdout and stderr), or why it could not run."""
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} is not on this node)\n"
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, errors="replace"
        )
    except subprocess.TimeoutExpired:
        return f"({' '.join(argv)} did not finish in {timeout:.0f} s)\n"
    except OSError as exc:
        return f"({' '.join(argv)} could not run: {exc.strerror})\n"
    tail = f"(exit {done.returncode})\n" if done.returncode else ""
    return done.stdout + (done.stderr and f"--- stderr ---\n{done.stderr}") + tail


def last_lines(path: Path, count: int) -> str:
    """The last `count` lines of a file (read from its end, so a huge file costs little)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        chunk = min(size, max(count, 1) * 4096)
        handle.seek(size - chunk)
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "".join(line + "\n" for line in lines[-count:])


def node_facts(paths: NodePaths) -> dict[str, object]:
    """What preflight looks at: CPUs, memory, disks, release, kernel, engines, Python, clock."""
    memory: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable", "SwapTotal"):
                memory[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        memory = {}
    disks: dict[str, object] = {}
    for folder in (Path("/"), paths.data, paths.root, paths.logs, Path("/var")):
        try:
            usage = shutil.disk_usage(folder)
            disks[str(folder)] = {"total": usage.total, "free": usage.free}
        except OSError as exc:
            disks[str(folder)] = f"not measured: {exc.strerror}"
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        release = ""
    return {
        "host": socket.gethostname(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timezone": time.tzname,
        "cpus": os.cpu_count(),
        "memory_bytes": memory,
        "disks": disks,
        "os_release": dict(
            line.split("=", 1)
            for line in release.splitlines()
            if "=" in line and not line.startswith("#")
        ),
        "kernel": platform.release(),
        "python3": run(["python3", "--version"]).strip(),
        "podman": run(["podman", "--version"]).strip(),
        "docker": run(["docker", "--version"]).strip(),
        "uptime": run(["uptime"]).strip(),
    }


def server_port(paths: NodePaths, options: BundleOptions) -> int:
    if options.port is not None:
        return options.port
    try:
        text = (paths.config / SERVER_ENV).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_PORT
    for _prefix, name, value in ASSIGNMENT.findall(text):
        if name == "APPLIANCE_PORT" and value.strip().isdigit():
            return int(value.strip())
    return DEFAULT_PORT


def fetch(url: str, certificate: Path) -> str:
    """GET `url` on this node (HTTPS checked against the node's own certificate): status and body."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(certificate))
        context.check_hostname = False  # 127.0.0.1 is not among a site certificate's names
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT, context=context) as answer:  # noqa: S310 (loopback)
            return f"HTTP {answer.status}\n{answer.read(1 << 20).decode('utf-8', errors='replace')}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}\n{exc.read(1 << 20).decode('utf-8', errors='replace')}"


def add_installed(bundle: SupportBundle, paths: NodePaths, options: BundleOptions) -> None:
    """installed.json, the engine, the install trail and the last playbook logs."""
    for name in (INSTALLED_FILE, ENGINE_FILE):
        if (paths.config / name).is_file():
            bundle.add_text(f"installed/{name}", (paths.config / name).read_text(errors="replace"))
    trail = paths.logs / INSTALLER_TRAIL
    if trail.is_file():
        bundle.add_text(f"installed/{INSTALLER_TRAIL}", last_lines(trail, options.lines))
    else:
        bundle.notes.append(f"installed: no {trail} (nothing was ever installed here?)")
    logs = sorted(paths.logs.glob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
    for log in logs:
        bundle.add_text(f"installed/logs/{log.name}", last_lines(log, options.lines))


def add_settings(bundle: SupportBundle, paths: NodePaths, _options: BundleOptions) -> None:
    """server.env and the units as systemd has them (secret values scrubbed)."""
    env = paths.config / SERVER_ENV
    if env.is_file():
        bundle.add_text(f"settings/{SERVER_ENV}", env.read_text(errors="replace"))
    for unit in UNITS:
        bundle.add_text(f"settings/{unit}", run(["systemctl", "cat", unit]))


def add_data(bundle: SupportBundle, paths: NodePaths, options: BundleOptions) -> None:
    """The store's audit trail, its folder, and its versions and trail checked by `appliance`."""
    history = paths.data / DATA_HISTORY
    if history.is_file():
        bundle.add_text(f"data/{DATA_HISTORY}", last_lines(history, options.lines))
    current = paths.data / "current"
    link = os.readlink(current) if current.is_symlink() else "(none)"
    listing = [f"{e.name}{'/' if e.is_dir() else ''}" for e in sorted(paths.data.iterdir())]
    bundle.add_text("data/store.txt", f"current -> {link}\n" + "\n".join(listing) + "\n")
    command = shutil.which("appliance") or str(paths.root / "bin" / "appliance")
    where = ["--data-dir", str(paths.data)]
    bundle.add_text("data/versions.txt", run([command, "versions", *where]))
    bundle.add_text("data/history-verify.txt", run([command, "history", "verify", *where]))


def add_server(bundle: SupportBundle, paths: NodePaths, options: BundleOptions) -> None:
    """/health/ready and /metrics when the server answers, and the units' status."""
    port = server_port(paths, options)
    certificate = paths.config / "tls.crt"
    scheme = "https" if certificate.is_file() else "http"
    for path, name in (("/health/ready", "health-ready.txt"), ("/metrics", "metrics.txt")):
        url = f"{scheme}://127.0.0.1:{port}{path}"
        try:
            bundle.add_text(f"server/{name}", fetch(url, certificate))
        except (OSError, ValueError, ssl.SSLError) as exc:
            bundle.add_text(f"server/{name}", f"no answer on {url}: {exc}\n")
    for unit in UNITS:
        bundle.add_text(
            f"server/{unit}.status.txt", run(["systemctl", "status", "--no-pager", unit])
        )


def add_journal(bundle: SupportBundle, _paths: NodePaths, options: BundleOptions) -> None:
    """The appliance units' journal since `options.since`."""
    for unit in UNITS:
        argv = ["journalctl", "--no-pager", "-o", "short-iso-precise", "-u", unit]
        bundle.add_text(f"journal/{unit}.txt", run([*argv, "--since", options.since]))


def add_container(bundle: SupportBundle, paths: NodePaths, _options: BundleOptions) -> None:
    """The engine's inspect of the server's container (environment values replaced), its images."""
    engine_file = paths.config / ENGINE_FILE
    engine = engine_file.read_text().strip() if engine_file.is_file() else "podman"
    engine = engine if engine in ("podman", "docker") else "podman"
    inspected = run([engine, "inspect", CONTAINER])
    try:
        bundle.add_json("container/inspect.json", without_env_values(json.loads(inspected)))
    except ValueError:
        bundle.add_text("container/inspect.txt", inspected)
    bundle.add_text("container/images.txt", run([engine, "images"]))


def add_refusals(bundle: SupportBundle, paths: NodePaths, options: BundleOptions) -> None:
    """The packs the inboxes refused, newest last, with their reasons."""
    lines: list[str] = []
    for inbox in paths.inboxes:
        rejected = inbox / REJECTED_DIR
        if not rejected.is_dir():
            continue
        reasons = sorted(rejected.glob(f"*{REASON_SUFFIX}"), key=lambda p: p.stat().st_mtime)
        for reason in reasons[-options.lines :]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reason.stat().st_mtime))
            said = reason.read_text(errors="replace").strip()
            lines.append(f"{stamp} {reason}: {said}")
    none = "(no refused pack in the inboxes)\n"
    bundle.add_text("refusals.txt", "\n".join(lines) + "\n" if lines else none)


SECTIONS: tuple[tuple[str, Callable[[SupportBundle, NodePaths, BundleOptions], None]], ...] = (
    ("node facts", lambda bundle, paths, _: bundle.add_json("node.json", node_facts(paths))),
    ("what is installed", add_installed),
    ("settings", add_settings),
    ("data store", add_data),
    ("server", add_server),
    ("journal", add_journal),
    ("container", add_container),
    ("inbox refusals", add_refusals),
)


def gather(paths: NodePaths, options: BundleOptions) -> SupportBundle:
    """Every section of the bundle, each on its own."""
    bundle = SupportBundle(secrets=node_secrets(paths, dict(os.environ)))
    for what, add in SECTIONS:
        bundle.section(what, functools.partial(add, bundle, paths, options))
    return bundle


def without_env_values(inspected: object) -> object:
    """The engine's inspect with every environment variable's value replaced: names stay."""
    if isinstance(inspected, list):
        for item in inspected:
            config = item.get("Config") if isinstance(item, dict) else None
            if isinstance(config, dict) and isinstance(config.get("Env"), list):
                config["Env"] = [
                    f"{str(pair).split('=', 1)[0]}={REDACTED}" for pair in config["Env"]
                ]
    return inspected


def readme(bundle: SupportBundle, paths: NodePaths, options: BundleOptions) -> str:
    lines = [
        f"Support bundle of the offline analytics appliance ({FORMAT})",
        f"node {socket.gethostname()}, made {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        f"journal since {options.since!r}; the last {options.lines} lines of each trail and log",
        f"folders read: {paths.config}, {paths.data}, {paths.logs}, {paths.root}",
        "",
        "Secrets are not in it: no token file, TLS key or token store was read in, and every text",
        "was scrubbed of the node's secret values, private keys, and secret settings' values",
        f"(shown as {REDACTED}).",
        "",
        "What is inside:",
        *(f"  {name}" for name in sorted(bundle.members)),
        "",
        "What could not be had:" if bundle.notes else "Every section was gathered.",
        *(f"  {note}" for note in bundle.notes),
    ]
    return "\n".join(lines) + "\n"


def write_support_bundle(out: Path, paths: NodePaths, options: BundleOptions) -> SupportBundle:
    """Gather everything and write `out` (.tar.gz) by rename: a cut run leaves no half archive.

    OSError when the archive cannot be written (a full or read-only disk); FileExistsError when
    `out` exists already.
    """
    if out.exists() or out.is_symlink():
        raise FileExistsError(out)
    bundle = gather(paths, options)
    bundle.add_text("README.txt", readme(bundle, paths, options))
    top = (
        f"appliance-support-{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            for name, data in sorted(bundle.members.items()):
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                info.mtime = int(time.time())
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(data))
        Path(partial).chmod(0o600)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return bundle
