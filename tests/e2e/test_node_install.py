"""The field operator's whole experience, on a simulated air-gapped node (tests/e2e/simnode.py).

One node, one story, in order: a tampered bundle changes nothing; a first install that never
gets healthy is taken off the node again; a failed preflight names every failed check and
changes nothing; install (with the engine and python3-venv from the bundle's Debian packages on
a standard node); serve; import from the stick; the importer picks up a dropped pack; a second
run changes nothing and keeps the engine; another engine is refused; upgrade with the API
failing no request; a broken upgrade rolls itself back, failing none either; rollback, failing
none; backup, uninstall, reinstall, restore; uninstall --purge takes off what the appliance
installed; and the audit trail tells all of it. The node has no network.

The story runs once on each node kind of APPLIANCE_NODE_KINDS (the `node` fixture; `make
node-test NODE=debian13-docker` runs one). Four steps do the same on every kind and run on the
first kind of the session only (`shared_step`): the refusals of install.sh before its playbook,
the preflight's report, and the two health-gate rescues, whose code (remove_appliance.yml, the
server role) the other kinds run in their uninstall, purge and rollback steps. The tests depend
on each other's order (pytest runs them as written, kind by kind); each says what it left.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import availability
from tests.e2e.conftest import Stick
from tests.e2e.simnode import USB, Node, kinds_from_env

ENGINE_PACKAGE = {"podman": "podman", "docker": "docker.io"}
NODES_OWN = (
    "runc"  # a package of every engine's closure that the test installs before the appliance
)
# The shared steps run where they prove the most: the first kind of the session to which the
# bundle brings packages (their purge is part of the rescue), else the first kind.
_KINDS = kinds_from_env()
FIRST_KIND = next((k.name for k in _KINDS if not k.preinstalled), _KINDS[0].name)


def support_bundle_of(node: Node, command: str) -> dict[str, str]:
    """Make a support bundle on the node with `command`; its members' text, none holding a secret.

    The secrets are the node's own (its admin token, its TLS key, if it has them): read on the
    node, never printed; each member is searched for them on the node too.
    """
    node.sh("rm -rf /root/sb && mkdir -m 0700 /root/sb", check=True)
    made = node.sh(command, timeout=300)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    script = (
        "import json, pathlib, sys, tarfile\n"
        "[archive] = sorted(pathlib.Path('/root/sb').glob('*.tar.gz'))\n"
        "secrets = [p.read_text().strip() for p in map(pathlib.Path, "
        "['/etc/appliance/admin.token', '/etc/appliance/tls.key']) if p.is_file()]\n"
        "found = {}\n"
        "with tarfile.open(archive) as tar:\n"
        "    for m in tar.getmembers():\n"
        "        text = tar.extractfile(m).read().decode()\n"
        "        assert not any(s and s in text for s in secrets), m.name\n"
        "        found[m.name.split('/', 1)[1]] = text\n"
        "print(json.dumps(found))\n"
    )
    read = node.sh(f"python3 - <<'EOF'\n{script}EOF")
    assert read.returncode == 0, read.stderr[-2000:]
    members: dict[str, str] = json.loads(read.stdout)
    assert "README.txt" in members and "node.json" in members
    return members


def shared_step(node: Node, why: str) -> None:
    """A step that is the same on every node kind runs on the session's first kind only."""
    if node.kind.name != FIRST_KIND:
        pytest.skip(f"the same on every node kind ({why}): ran on {FIRST_KIND} in this session")


pytestmark = pytest.mark.slow

HEALTH_RETRIES = 30  # seconds the broken release gets before the installer gives up on it
IMPORT_WITHIN_SECONDS = 90.0


def unpack(node: Node, version: str) -> str:
    """Unpack appliance-<version>.tar from the stick into /var/tmp; returns the bundle folder."""
    target = f"/var/tmp/bundle-{version}"
    node.sh(
        f"rm -rf {target} && mkdir -p {target} && tar -xf {USB}/appliance-{version}.tar -C {target}",
        check=True,
    )
    return f"{target}/appliance-{version}"


def install(node: Node, folder: str, *args: str) -> subprocess.CompletedProcess[str]:
    return node.sh(f"cd {folder} && ./install.sh {' '.join(args)}")


def recap(output: str) -> dict[str, int]:
    match = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-2000:]
    return dict(
        zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True)
    )


def installed(node: Node) -> dict[str, str]:
    data: dict[str, str] = json.loads(
        node.sh("cat /etc/appliance/installed.json", check=True).stdout
    )
    return data


def trail(node: Node) -> list[dict[str, str]]:
    lines = node.sh("cat /var/log/appliance/installer.jsonl", check=True).stdout.splitlines()
    return [json.loads(line) for line in lines]


def current_version(node: Node) -> str | None:
    result = node.sh("appliance versions --json", check=True)
    current: str | None = json.loads(result.stdout)["current"]
    return current


def brought_by_the_bundle(node: Node) -> list[str]:
    """What the installer must install on this kind: python3-venv and the engine on a standard
    node, nothing where they came with the node."""
    return [] if node.kind.preinstalled else ["python3-venv", ENGINE_PACKAGE[node.engine]]


def package_installed(node: Node, name: str) -> bool:
    result = node.sh(f"dpkg-query -W -f '${{db:Status-Abbrev}}' {name}")
    return result.returncode == 0 and result.stdout.startswith("ii")


def logs_of(node: Node) -> int:
    """How many playbook logs install.sh has left in /var/log/appliance."""
    result = node.sh("ls /var/log/appliance/ 2>/dev/null | grep -c '^install-.*\\.log$'")
    return int(result.stdout.strip() or 0)


def nothing_installed(node: Node, *, logs: bool = False) -> None:
    """The node as it was before the appliance: with `logs`, but for the installer's log and trail."""
    for path in (
        "/opt/appliance",
        "/etc/appliance",
        "/var/lib/appliance",
        "/etc/systemd/system/appliance-server.service",
        "/etc/systemd/system/appliance-importer.service",
        "/etc/sysctl.d/60-appliance.conf",
        "/usr/local/bin/appliance",
        *([] if logs else ["/var/log/appliance"]),
    ):
        assert node.sh(f"test -e {path}").returncode != 0, f"{path} exists"
    assert node.sh("id appliance").returncode != 0, "the appliance user exists"
    for name in brought_by_the_bundle(node):
        assert not package_installed(node, name), f"{name} is installed"
    if node.sh(f"command -v {node.engine}").returncode == 0:
        assert node.sh(f"{node.engine} images -q").stdout.strip() == ""


def first_install_flags(node: Node) -> str:
    """The engine is chosen once, at the first install; every later run goes without the flag."""
    return "--engine docker" if node.engine == "docker" else ""


# --- refusals that change nothing -------------------------------------------------------------------


def test_a_tampered_bundle_is_refused_and_nothing_changes(node: Node, stick: Stick) -> None:
    shared_step(node, "install.sh refuses these before it looks at the node")
    folder = unpack(node, "1.0.0")
    trust = f"--trust-fingerprint {stick.fingerprint}"
    node.sh(
        f"cp -a {folder} /var/tmp/flipped && printf x | dd of=/var/tmp/flipped/images/server.tar bs=1 seek=5000 conv=notrunc status=none",
        check=True,
    )
    node.sh(
        f"cp -a {folder} /var/tmp/extra && echo hi > /var/tmp/extra/wheels/extra.txt", check=True
    )
    node.sh(f"cp -a {folder} /var/tmp/loose && chmod o+w /var/tmp/loose/manifest.json", check=True)
    cases = {
        "/var/tmp/loose": (trust, "manifest.json is not owned by root or is writable by others"),
        "/var/tmp/flipped": (trust, "checksum check failed: images/server.tar: FAILED"),
        "/var/tmp/extra": (trust, "wheels/extra.txt is in the bundle but not in SHA256SUMS"),
        folder: (
            "--trust-fingerprint SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "not trusted",
        ),
        f"{folder} ": ("", "no trusted bundle signers"),
    }
    for path, (flags, reason) in cases.items():
        result = install(node, path.strip(), flags)
        assert result.returncode != 0, path
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("install.sh: error: ") and reason in last, last
        nothing_installed(node)


def test_a_first_install_that_never_gets_healthy_is_taken_off_the_node(
    node: Node, stick: Stick
) -> None:
    shared_step(node, "the rescue is remove_appliance.yml, which every kind runs at its purge")
    folder = unpack(node, "1.2.0")
    trust = f"--trust-fingerprint {stick.fingerprint} --pack-signers {USB}/pack_signers"
    logs = logs_of(node)
    result = install(
        node,
        folder,
        trust,
        first_install_flags(node),
        f"-e appliance_server_health_retries={HEALTH_RETRIES}",
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "1.2.0 failed its health gate; nothing was running before" in last, last
    assert node.sh("systemctl is-active appliance-server").stdout.strip() != "active"
    nothing_installed(node, logs=True)  # packages, venv, units, user, image: all taken off again
    assert logs_of(node) == logs + 1  # this run's log stays
    event = trail(node)[-1]
    assert event["action"] == "install-failed"
    brought = brought_by_the_bundle(node)
    assert all(any(p.startswith(f"{name}=") for p in event["packages"]) for name in brought)
    # What the operator carries off the node now: the bundle's own support bundle.
    bundle = support_bundle_of(
        node, f"cd {folder} && ./install.sh --support-bundle /root/sb {trust}"
    )
    assert '"action": "install-failed"' in bundle["installed/installer.jsonl"]
    assert any(name.startswith("installed/logs/install-") for name in bundle), sorted(bundle)
    assert "no answer on http://127.0.0.1:8080/health/ready" in bundle["server/health-ready.txt"]


def test_a_failed_preflight_names_each_check_with_its_fix_and_changes_nothing(
    node: Node, stick: Stick
) -> None:
    """Two checks fail at once (the port is taken, the disk too small): both are named, each on
    its own line, before anything on the node changed (no package, no environment)."""
    shared_step(node, "every kind runs the same checks, and the apt plan at each install")
    folder = unpack(node, "1.0.0")
    node.sh("setsid -f python3 -m http.server 8080 --bind 0.0.0.0 >/dev/null 2>&1", check=True)
    logs = logs_of(node)
    try:
        time.sleep(1)
        result = install(
            node,
            folder,
            f"--trust-fingerprint {stick.fingerprint}",
            first_install_flags(node),
            "-e appliance_preflight_min_free_mb=100000000",
        )
    finally:
        node.sh("pkill -f 'http.server 8080'")
    assert result.returncode == 4, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("install.sh: error: preflight: 2 check(s) failed: disk, port"), (
        lines[-1]
    )
    disk = [line for line in lines if line.startswith("install.sh:   disk: ")]
    port = [line for line in lines if line.startswith("install.sh:   port: 8080 is in use")]
    assert len(disk) == 1 and "free space there or grow the disk" in disk[0], lines[-6:]
    assert len(port) == 1 and "pass -e appliance_port=N" in port[0], lines[-6:]
    nothing_installed(node, logs=True)
    assert logs_of(node) == logs + 1
    event = trail(node)[-1]
    assert event["action"] == "install-refused" and "port: 8080" in event["detail"]


# --- install, serve, import ------------------------------------------------------------------------


def test_install_from_the_stick_serves_the_dashboard_and_api(node: Node, stick: Stick) -> None:
    folder = unpack(node, "1.0.0")
    # runc, which every engine needs, becomes the node's own before the install: the installer
    # must neither record it as its own nor purge it later (test_uninstall_purge_...).
    if not package_installed(node, NODES_OWN):
        node.sh(
            f"dpkg -i $(find {folder}/debs/{node.kind.target} -name 'runc_*.deb')",
            check=True,
        )
    result = install(
        node,
        folder,
        f"--trust-fingerprint {stick.fingerprint}",
        f"--pack-signers {USB}/pack_signers",
        first_install_flags(node),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert recap(result.stdout)["failed"] == 0
    assert installed(node)["version"] == "1.0.0"
    assert installed(node)["engine"] == node.engine
    assert installed(node)["target"] == node.kind.target
    assert node.sh("cat /etc/appliance/engine", check=True).stdout.strip() == node.engine
    # What the bundle brought is installed, recorded for --purge, and named in the audit trail.
    record = node.sh("cat /etc/appliance/node-packages.json")  # none when nothing was missing
    recorded = json.loads(record.stdout)["packages"] if record.returncode == 0 else []
    names = {entry["name"] for entry in recorded}
    assert bool(names) == bool(brought_by_the_bundle(node))
    event = trail(node)[-1]
    for name in brought_by_the_bundle(node):
        assert package_installed(node, name) and name in names, name
        assert any(entry.startswith(f"{name}=") for entry in event["packages"]), event
    assert NODES_OWN not in names
    assert (event["action"], event["engine"]) == ("install", node.engine)
    assert node.sh("systemctl is-active appliance-server appliance-importer").stdout.split() == [
        "active",
        "active",
    ]
    status, body = node.http("/")
    assert status == 200 and "<html" in body.lower()
    assert node.http("/health/startup")[0] == 200
    assert node.http("/health/ready")[0] == 503  # no data yet
    # Readiness systemd sees: Type=notify under Podman, its status line from the server.
    show = node.sh("systemctl show -p Type -p StatusText appliance-server", check=True).stdout
    if node.engine == "podman":
        assert "Type=notify" in show, show
    if node.engine == "podman" and node.kind.target == "debian13":  # Podman 4.3 passes READY only
        assert "StatusText=started with no data imported yet" in show, show
    unit = node.sh("cat /etc/systemd/system/appliance-server.service", check=True).stdout
    for hardening in (
        "--read-only",
        "--cap-drop ALL",
        "no-new-privileges",
        "--memory",
        "--cpus",
        "--user 10001:10001",
    ):
        assert hardening in unit


def test_a_pack_from_the_stick_is_imported_and_served(node: Node) -> None:
    result = node.sh(f"appliance import {USB}/results-1.pack")
    assert result.returncode == 0, result.stderr
    assert current_version(node) == "v0001"
    assert node.http("/health/ready")[0] == 200
    status, body = node.http("/api/v1/items?limit=3")
    assert status == 200 and len(json.loads(body)["items"]) == 3
    owner = node.sh("stat -c %u /var/lib/appliance/versions/v0001", check=True).stdout.strip()
    assert owner == "10001"  # the appliance command ran as the server's user
    assert node.sh(f"{node.engine} ps --format '{{{{.Names}}}}'").stdout.split() == [
        "appliance-server"
    ]


def test_a_support_bundle_of_a_serving_node_holds_its_answers_and_no_secret(node: Node) -> None:
    bundle = support_bundle_of(node, "appliance support-bundle --out /root/sb/good.tar.gz")
    assert bundle["server/health-ready.txt"].startswith("HTTP 200\n")
    assert "v0001" in bundle["data/versions.txt"]
    if node.engine == "podman" and node.kind.target == "debian13":  # Podman 4.3 passes READY only
        assert "started with" in bundle["server/appliance-server.service.status.txt"]


def test_the_importer_picks_up_a_pack_dropped_in_the_inbox(node: Node) -> None:
    node.sh(
        f"cp {USB}/results-2.pack /srv/appliance/inbox/.results-2.pack.part && mv /srv/appliance/inbox/.results-2.pack.part /srv/appliance/inbox/results-2.pack",
        check=True,
    )
    deadline = time.monotonic() + IMPORT_WITHIN_SECONDS
    while current_version(node) != "v0002" and time.monotonic() < deadline:
        time.sleep(1)
    assert current_version(node) == "v0002", node.sh(
        "journalctl -u appliance-importer --no-pager | tail -20"
    ).stdout
    assert node.sh("test -f /srv/appliance/inbox/done/results-2.pack").returncode == 0


def test_a_second_run_changes_nothing_and_check_mode_too(node: Node) -> None:
    folder = "/var/tmp/bundle-1.0.0/appliance-1.0.0"
    again = install(node, folder)
    assert again.returncode == 0, again.stderr[-2000:]
    assert recap(again.stdout)["changed"] == 0
    checked = install(node, folder, "--check")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
    assert recap(checked.stdout)["changed"] == 0
    assert installed(node)["engine"] == node.engine  # no flag: the node's own engine


def test_another_engine_is_refused_in_one_line_and_nothing_changes(node: Node) -> None:
    folder = "/var/tmp/bundle-1.0.0/appliance-1.0.0"
    other = "podman" if node.engine == "docker" else "docker"
    before = node.sh(
        "ls -l --time-style=full-iso /etc/systemd/system/appliance-*", check=True
    ).stdout
    result = install(node, folder, f"--engine {other}")
    assert result.returncode == 4
    details = [line for line in result.stderr.splitlines() if line.startswith("install.sh:   ")]
    assert details == [
        f"install.sh:   engine: this node runs {node.engine} (chosen at its first install), "
        f"--engine {other} would change it: pass --change-engine too to switch "
        f"(the {node.engine} images stay until removed by hand)"
    ], result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "install.sh: error: preflight: 1 check(s) failed: engine (each is named above with its fix)"
    )
    assert node.sh("ls -l --time-style=full-iso /etc/systemd/system/appliance-*").stdout == before
    assert node.sh("cat /etc/appliance/engine").stdout.strip() == node.engine
    assert trail(node)[-1]["action"] == "install-refused"


# --- upgrades -------------------------------------------------------------------------------------


LONGEST_WAIT_SECONDS = 2.0  # what a request may wait at most while the server is switched
API = "http://127.0.0.1:8080/api/v1/items?limit=1"


def stop_polling(node: Node, step: str) -> dict[str, Any]:
    """The pollers' summed report, printed with the step and the kind (docs/performance.md)."""
    report = availability.stop_polling(node)
    print(f"availability during {step} on {node.kind.name}: {json.dumps(report)}")
    return report


CONTAINER_LOG_FILES = {  # where each engine would keep a container's own copy of its output
    "podman": "find /var/lib/containers/storage -name ctr.log -size +0c",
    "docker": "find /var/lib/docker/containers -name '*-json.log' -size +0c",
}


def assert_the_logs_are_in_the_journal_only(node: Node, since: str, requests: int) -> None:
    """The servers' output is in the journal, each line once, and the engine keeps no log file."""
    driver = node.sh(
        f"{node.engine} inspect -f '{{{{.HostConfig.LogConfig.Type}}}}' appliance-server",
        check=True,
    ).stdout.strip()
    assert driver == "none", driver
    files = node.sh(CONTAINER_LOG_FILES[node.engine], check=True).stdout.split()
    assert files == [], files  # after a load of `requests` requests
    lines = node.sh(
        f"journalctl -u appliance-server --since '{since}' -o cat --no-pager", check=True
    ).stdout.splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    # Reads are logged a few in full each second and the rest counted (server/read_log.py).
    ids = [entry["request_id"] for entry in entries if entry["msg"] == "request"]
    counted = sum(entry["reads"] for entry in entries if entry["msg"] == "reads")
    assert len(ids) >= 10 and counted > 0, (len(ids), counted, requests)
    assert len(ids) == len(set(ids)), "a request's log line is in the unit's journal twice"
    probe = node.sh(
        "journalctl CONTAINER_NAME=appliance-server-probe -o cat --no-pager", check=True
    ).stdout
    assert '"msg":"worker started"' in probe, probe[-2000:]  # detached: the engine wrote it


def test_an_upgrade_fails_no_request(node: Node) -> None:
    folder = unpack(node, "1.1.0")
    since = node.sh("date '+%Y-%m-%d %H:%M:%S'", check=True).stdout.strip()
    availability.start_polling(node, API)
    result = install(node, folder)
    report = stop_polling(node, "the upgrade 1.0.0 -> 1.1.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert installed(node)["version"] == "1.1.0" and installed(node)["previous"] == "1.0.0"
    assert report["failures"] == 0, report
    assert report["requests"] > 100, report  # the pollers ran through the whole upgrade
    assert report["longest_wait_seconds"] <= LONGEST_WAIT_SECONDS, report
    unit = node.sh("cat /etc/systemd/system/appliance-server.service", check=True).stdout
    assert "appliance-server:1.1.0" in unit and "APPLIANCE_SHARE_PORT=1" in unit
    served = node.sh(
        f"{node.engine} ps --format '{{{{.Names}}}} {{{{.Image}}}}'", check=True
    ).stdout
    assert served.split() == ["appliance-server", "localhost/appliance-server:1.1.0"], served
    assert node.sh("cat /proc/sys/net/ipv4/tcp_migrate_req", check=True).stdout.strip() == "1"
    assert current_version(node) == "v0002"  # the data stayed
    assert_the_logs_are_in_the_journal_only(node, since, report["requests"])
    journal = node.sh(f"journalctl --since '{since}' -o cat --no-pager", check=True).stdout
    # The old server, then the go-between, left the shared port before it stopped (handover.py).
    assert journal.count("left the shared port") == 2, journal[-3000:]


def test_an_upgrade_that_fails_its_health_gate_rolls_itself_back(node: Node) -> None:
    shared_step(node, "the rescue runs the server role, which every kind runs at its rollback")
    folder = unpack(node, "1.2.0")
    availability.start_polling(node, API)
    result = install(node, folder, f"-e appliance_server_health_retries={HEALTH_RETRIES}")
    report = stop_polling(node, "the failed upgrade 1.1.0 -> 1.2.0 and its rollback")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "1.2.0 failed its health gate; rolled back to 1.1.0" in last, last
    assert report["failures"] == 0, report  # the broken version never came near the port
    assert report["longest_wait_seconds"] <= LONGEST_WAIT_SECONDS, report
    assert installed(node)["version"] == "1.1.0"
    assert (
        "appliance-server:1.1.0"
        in node.sh("cat /etc/systemd/system/appliance-server.service").stdout
    )
    assert node.http("/health/ready")[0] == 200
    assert trail(node)[-1]["action"] == "upgrade-failed"
    leftovers = node.sh(f"{node.engine} ps -a --format '{{{{.Names}}}}'", check=True).stdout
    assert leftovers.split() == ["appliance-server"], leftovers  # no probe, no go-between


def test_rollback_returns_to_the_previous_version(node: Node) -> None:
    availability.start_polling(node, API)
    result = install(node, "/var/tmp/bundle-1.1.0/appliance-1.1.0", "--rollback")
    report = stop_polling(node, "the rollback 1.1.0 -> 1.0.0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert report["failures"] == 0, report
    assert report["longest_wait_seconds"] <= LONGEST_WAIT_SECONDS, report
    assert installed(node)["version"] == "1.0.0" and installed(node)["previous"] == "1.1.0"
    assert (
        "appliance-server:1.0.0"
        in node.sh("cat /etc/systemd/system/appliance-server.service").stdout
    )
    assert node.http("/health/ready")[0] == 200


# --- backup, uninstall, reinstall, restore ------------------------------------------------------------


def test_backup_uninstall_reinstall_restore(node: Node) -> None:
    folder = "/var/tmp/bundle-1.1.0/appliance-1.1.0"
    node.sh("mkdir -p /backup", check=True)
    node.sh("appliance token create ops-before-backup --role admin", check=True)
    backup = install(node, folder, "--backup /backup")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-2000:]
    [archive] = node.sh("ls /backup/*.tar.gz", check=True).stdout.split()
    assert node.sh(f"cd /backup && sha256sum -c {Path(archive).name}.sha256").returncode == 0

    removed = install(node, folder, "--uninstall")
    assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-2000:]
    assert node.sh("test -e /etc/systemd/system/appliance-server.service").returncode != 0
    assert node.sh("test -e /opt/appliance").returncode != 0
    assert node.sh("test -d /var/lib/appliance/versions/v0002").returncode == 0  # data kept
    assert node.sh("test -f /etc/appliance/bundle_signers").returncode == 0  # trust kept

    again = install(node, folder)  # the node's own trust: no flags needed
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert current_version(node) == "v0002"

    node.sh("appliance rollback v0001", check=True)  # change the data, then restore puts it back
    assert current_version(node) == "v0001"
    node.sh("appliance token revoke ops-before-backup", check=True)  # revoked after the backup
    restored = install(node, folder, f"--restore {archive}")
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-2000:]
    assert current_version(node) == "v0002"
    assert node.http("/health/ready")[0] == 200
    tokens = json.loads(node.sh("appliance token list --json", check=True).stdout)["tokens"]
    states = {t["name"]: t["state"] for t in tokens}
    assert states["ops-before-backup"] == "revoked"  # the restore revived no revoked token


def test_uninstall_purge_takes_off_only_what_the_appliance_installed(node: Node) -> None:
    folder = "/var/tmp/bundle-1.1.0/appliance-1.1.0"
    purged = install(node, folder, "--uninstall --purge")
    assert purged.returncode == 0, purged.stdout[-3000:] + purged.stderr[-2000:]
    nothing_installed(node, logs=True)
    if node.kind.preinstalled:  # the node's own engine and python3-venv stay
        assert package_installed(node, ENGINE_PACKAGE[node.engine])
        assert package_installed(node, "python3-venv")
    else:
        assert node.sh(f"command -v {node.engine}").returncode != 0
    assert package_installed(node, NODES_OWN)  # installed before the appliance: stays
    event = trail(node)[-1]
    assert (
        event["action"] == "uninstall" and "purged data, trust and configuration" in event["detail"]
    )
    assert {p.split("=")[0] for p in event["packages"]} >= set(brought_by_the_bundle(node))


def test_the_audit_trail_lists_every_step(node: Node, stick: Stick) -> None:
    events = trail(node)
    actions = [event["action"] for event in events]
    shared = node.kind.name == FIRST_KIND  # the shared steps ran on this kind
    assert actions == [
        *(["install-failed", "install-refused"] if shared else []),
        "install",
        "install-refused",
        "upgrade",
        *(["upgrade-failed"] if shared else []),
        "rollback",
        "backup",
        "uninstall",
        "install",
        "restore",
        "uninstall",
    ]
    versions = [event["version"] for event in events if event["action"] != "install-refused"][:5]
    expected = (
        ["1.2.0", "1.0.0", "1.1.0", "1.2.0", "1.0.0"] if shared else ["1.0.0", "1.1.0", "1.0.0"]
    )
    assert versions[: len(expected)] == expected
    assert all(event["fingerprint"] == stick.fingerprint for event in events)
    assert {event["engine"] for event in events} == {node.engine}


def test_the_node_had_no_network(node: Node) -> None:
    """No link but virtual ones (lo; Docker's own bridge docker0 and its veths live inside the
    node), and no route out."""
    links = node.sh("ls /sys/class/net", check=True).stdout.split()
    physical = [
        link for link in links if node.sh(f"test -e /sys/devices/virtual/net/{link}").returncode
    ]
    assert "lo" in links and physical == [], links
    routes = node.sh("cat /proc/net/route", check=True).stdout.splitlines()[1:]
    assert not [route for route in routes if route.split()[1] == "00000000"], routes  # no default
