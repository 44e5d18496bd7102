"""HTTPS and named tokens on a simulated air-gapped node, as an operator and an admin use them.

Install with a certificate the installer makes for the node; the server speaks HTTPS only, its
health gate and the image's healthcheck too; the fingerprint is printed and in the audit trail.
Then an admin token and a viewer token are made on the node, a pack is uploaded through HTTPS
with the admin token, the trail names the token, and the revoked token is refused within a
second. A second run keeps HTTPS and changes nothing. Clients inside the node trust exactly the
node's certificate (Python's ssl with it as the only CA, as `curl --cacert` does).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.trust.sshsig import generate_key, load_private_key, public_key_of
from tests.conftest import Signer, make_pack, make_signer, make_tables, run
from tests.e2e.conftest import Stick
from tests.e2e.simnode import USB, Node, kinds_from_env, start_node
from tests.e2e.test_node_install import (
    first_install_flags,
    install,
    installed,
    recap,
    trail,
    unpack,
)

pytestmark = pytest.mark.slow

# One kind is enough: HTTPS and tokens are the same on every kind (the server, its image and the
# playbook's tasks are), and each kind costs CI a full install. Debian 13 standard is what a
# field operator installs today.
_KINDS = kinds_from_env()
KIND = next((k for k in _KINDS if k.name == "debian13-standard"), _KINDS[0])


@pytest.fixture(scope="module")
def carried(stick: Stick, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own stick: the shared one's files (hard links), and room for what the
    tests sign later (trust updates, a pack of a new workstation key), which the node sees at
    /media/usb as soon as they are written."""
    folder = tmp_path_factory.mktemp("usb-https")
    subprocess.run(["cp", "-al", f"{stick.folder}/.", str(folder)], check=True)
    folder.chmod(0o755)
    return folder


def carry(carried: Path, name: str, data: bytes) -> str:
    """Put a file on this module's stick; its path on the node."""
    path = carried / name
    path.write_bytes(data)
    path.chmod(0o644)
    return f"{USB}/{name}"


@pytest.fixture(scope="module")
def node(carried: Path) -> Iterator[Node]:
    """A fresh node of KIND for this module (overrides the per-kind node of conftest.py)."""
    started = start_node(f"appliance-e2e-https-{KIND.name}", carried, KIND)
    try:
        yield started
    finally:
        started.stop()


CERT = "/etc/appliance/tls.crt"
CLIENT = f"""
import json, ssl, sys, urllib.request, urllib.error
method, path, token, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile="{CERT}")
data = open(body, "rb").read() if body else None
request = urllib.request.Request("https://127.0.0.1:8080" + path, data=data, method=method)
if token:
    request.add_header("Authorization", "Bearer " + token)
try:
    answer = urllib.request.urlopen(request, timeout=60, context=context)
    status, headers, text = answer.status, dict(answer.headers), answer.read().decode()
except urllib.error.HTTPError as e:
    status, headers, text = e.code, dict(e.headers), e.read().decode()
print(json.dumps({{"status": status, "headers": {{k.lower(): v for k, v in headers.items()}}, "body": text}}))
"""


def https(
    node: Node, path: str, *, method: str = "GET", token: str = "", body: str = ""
) -> dict[str, object]:
    """One request over HTTPS from inside the node, trusting only the node's certificate."""
    node.sh(f"cat > /tmp/client.py <<'EOF'\n{CLIENT}EOF", check=True)
    result = node.sh(f"python3 /tmp/client.py {method} '{path}' '{token}' '{body}'", check=True)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_install_with_a_generated_certificate_serves_https_only(node: Node, stick: Stick) -> None:
    folder = unpack(node, "1.0.0")
    result = install(
        node,
        folder,
        f"--trust-fingerprint {stick.fingerprint}",
        f"--pack-signers {USB}/pack_signers",
        first_install_flags(node),
        "-e appliance_tls=self-signed",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    shown = json.loads(node.sh(f"appliance tls show {CERT} /etc/appliance/tls.key --json",
                               check=True).stdout)  # fmt: skip
    assert f"HTTPS with certificate {shown['fingerprint']}" in result.stdout
    assert "127.0.0.1" in shown["names"]
    event = next(e for e in trail(node) if e["action"] == "tls-certificate")
    assert shown["fingerprint"] in event["detail"]
    assert event["detail"].startswith("self-signed")
    answer = https(node, "/health/startup")
    assert answer["status"] == 200
    headers = answer["headers"]
    assert isinstance(headers, dict)
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert node.http("/health/startup")[0] == 0  # plain HTTP fails at the TLS handshake
    assert node.sh("stat -c '%a %U %G' /etc/appliance/tls.key", check=True).stdout.split() == [
        "640",
        "root",
        "appliance",
    ]
    # The image's HEALTHCHECK runs in the container with the container's environment, which
    # names the certificate: it then asks over HTTPS, pinned to it (tests/integration/test_tls.py
    # runs that command; `exec` into a container does not work inside the simulated node).
    inspected = node.sh(f"{node.engine} inspect appliance-server", check=True).stdout
    config = json.loads(inspected)[0]["Config"]
    assert f"APPLIANCE_TLS_CERT={CERT}" in config["Env"]
    assert "appliance.healthcheck" in " ".join(config["Healthcheck"]["Test"])


def test_tokens_over_https_name_who_uploaded_and_a_revoked_one_is_refused(node: Node) -> None:
    made = node.sh("appliance token create ops-alice --role admin", check=True)
    admin = made.stdout.strip()
    viewer = node.sh("appliance token create wall --role viewer", check=True).stdout.strip()
    assert admin.startswith("apl_") and viewer.startswith("apl_")
    time.sleep(1.0)
    node.sh(f"cp {USB}/results-1.pack /tmp/upload.pack", check=True)
    uploaded = https(node, "/api/v1/data/packs", method="POST", token=admin,
                     body="/tmp/upload.pack")  # fmt: skip
    assert uploaded["status"] == 201, uploaded
    assert https(node, "/api/v1/items?limit=1")["status"] == 401  # reads need a token now
    assert https(node, "/api/v1/items?limit=1", token=viewer)["status"] == 200
    lines = node.sh("cat /var/lib/appliance/history.jsonl", check=True).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    imported = next(e for e in events if e["event"] == "import")
    assert imported["actor"] == "token ops-alice (admin) from 127.0.0.1"
    created = next(e for e in events if e["event"] == "token-create")
    assert created["by"]["user"] == "root"  # who ran the command, not the appliance user
    listed = json.loads(node.sh("appliance token list --json", check=True).stdout)["tokens"]
    assert {t["name"] for t in listed} >= {"bootstrap", "ops-alice", "wall"}
    node.sh("appliance token revoke ops-alice", check=True)
    time.sleep(1.0)
    refused = https(node, "/api/v1/data/refresh", method="POST", token=admin)
    assert refused["status"] == 401
    assert json.loads(str(refused["body"]))["error"]["reason"] == "token_revoked"
    assert node.sh("appliance history verify").returncode == 0


def served_fingerprint(node: Node) -> str:
    shown = node.sh(f"appliance tls show {CERT} /etc/appliance/tls.key --json", check=True)
    fingerprint: str = json.loads(shown.stdout)["fingerprint"]
    return fingerprint


def test_a_bad_brought_certificate_is_refused_and_the_served_one_stays(node: Node) -> None:
    before = served_fingerprint(node)
    node.sh(
        "cd /root && appliance tls self-signed --cert /tmp/a.crt --key /tmp/a.key --name a "
        "&& appliance tls self-signed --cert /tmp/b.crt --key /tmp/b.key --name b",
        check=True,
    )
    result = install(node, "/var/tmp/bundle-1.0.0/appliance-1.0.0",
                     "-e appliance_tls_cert=/tmp/a.crt", "-e appliance_tls_key=/tmp/b.key")  # fmt: skip
    assert result.returncode != 0
    assert "is not the key of the certificate" in result.stdout + result.stderr
    assert served_fingerprint(node) == before
    assert https(node, "/health/startup")["status"] == 200


def test_a_brought_certificate_is_served_and_recorded(node: Node) -> None:
    node.sh(
        "appliance tls self-signed --cert /tmp/site.crt --key /tmp/site.key "
        "--name node.site.example --address 127.0.0.1",
        check=True,
    )
    result = install(node, "/var/tmp/bundle-1.0.0/appliance-1.0.0",
                     "-e appliance_tls_cert=/tmp/site.crt", "-e appliance_tls_key=/tmp/site.key")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    fingerprint = served_fingerprint(node)
    assert f"HTTPS with certificate {fingerprint} for node.site.example" in result.stdout
    event = [e for e in trail(node) if e["action"] == "tls-certificate"][-1]
    assert event["detail"].startswith(f"installed {fingerprint}")
    assert https(node, "/health/startup")["status"] == 200


def test_a_second_run_keeps_https_and_changes_nothing(node: Node) -> None:
    result = install(node, "/var/tmp/bundle-1.0.0/appliance-1.0.0")
    assert result.returncode == 0, result.stdout[-3000:]
    assert recap(result.stdout)["changed"] == 0, changed_tasks(result.stdout)
    assert https(node, "/health/startup")["status"] == 200


def changed_tasks(output: str) -> list[str]:
    """The tasks a playbook run reports changed, each with its result line."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed: "):
            found.append(f"{task} {line[:200]}")
    return found


def put(node: Node, path: str, data: bytes) -> None:
    """Write a file into the node (as the stick would carry it)."""
    node.sh(f"echo {base64.b64encode(data).decode()} | base64 -d > {path}", check=True)


def test_the_release_key_rotates_with_a_trust_update_from_the_stick(
    node: Node, stick: Stick, carried: Path, tmp_path: Path
) -> None:
    """The release team signs, with the key the node trusts, an update naming the new key and
    the old one expired; a bundle signed by the new key then installs, and the old key's
    bundles are refused."""
    new = generate_key(tmp_path / "release-2.key", "release-2@appliance.test")
    old = public_key_of(load_private_key(stick.release_key))
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
    signers = tmp_path / "bundle_signers"
    signers.write_text(
        f'release namespaces="appliance-bundle,appliance-trust",valid-before="{yesterday}" '
        f"{old.openssh_line()}\n"
        f'release-2 namespaces="appliance-bundle,appliance-trust" {new.openssh_line()}\n'
    )
    update = tmp_path / "rotate.trust"
    made = run("appliance", "trust", "make", "--role", "bundle", "--serial", "2",
               "--allowed-signers", signers, "--key", stick.release_key, "--output", update)  # fmt: skip
    assert made.returncode == 0, made.stderr
    # The 1.1.0 bundle as the release team signs it now: its SHA256SUMS signed by the new key.
    folder = unpack(node, "1.1.0")
    sums = node.sh(f"cat {folder}/SHA256SUMS", check=True).stdout.encode()
    (tmp_path / "SHA256SUMS").write_bytes(sums)
    signed = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-q", "-f", str(tmp_path / "release-2.key"),
         "-n", "appliance-bundle", str(tmp_path / "SHA256SUMS")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    put(node, f"{folder}/SHA256SUMS.sig", (tmp_path / "SHA256SUMS.sig").read_bytes())
    on_stick = carry(carried, "rotate.trust", update.read_bytes())
    refused = install(node, folder)  # without the update the node does not know the new key
    assert refused.returncode != 0
    assert installed(node)["version"] == "1.0.0"
    upgraded = install(node, folder, f"--trust-update {on_stick}")
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-2000:]
    assert "trust update good: role bundle, serial " in upgraded.stderr + upgraded.stdout
    assert installed(node)["version"] == "1.1.0"
    assert https(node, "/health/startup")["status"] == 200  # HTTPS kept across the upgrade
    shown = node.sh("appliance trust show", check=True).stdout
    assert "release-2" in shown and "expired" in shown
    # A bundle the retired key signed, after its valid-before: refused before any change.
    retired = unpack(node, "1.2.0")
    result = install(node, retired)
    assert result.returncode != 0
    last = (result.stderr or result.stdout).strip().splitlines()[-1]
    assert last.startswith("install.sh: error: ") and "expired" in last, last
    assert installed(node)["version"] == "1.1.0"


@pytest.fixture(scope="module")
def pack_trust_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key that signs the site's pack trust updates (the ML team keeps it offline)."""
    key = tmp_path_factory.mktemp("pack-trust") / "pack-trust.key"
    generate_key(key, "pack-trust@appliance.test")
    return key


def pack_trust_line(key: Path) -> str:
    """The allowed_signers line that lets `key` sign pack trust updates, and nothing else."""
    return f'pack-trust namespaces="appliance-trust" {public_key_of(load_private_key(key)).openssh_line()}\n'


def test_a_pack_signed_by_a_revoked_workstation_key_is_refused_everywhere(
    node: Node, stick: Stick, signer: Signer, pack_trust_key: Path, tmp_path: Path
) -> None:
    """A workstation key is revoked by a pack trust update, applied by root with `appliance
    trust apply`: its packs are refused by the importer, by the running server's upload, and
    by ssh-keygen -Y verify -r with the node's own files."""
    workstation = signer.allowed_signers.read_text()
    signers = tmp_path / "pack_signers"
    signers.write_text(workstation + pack_trust_line(pack_trust_key))
    # The node is given the pack trust key once, with the workstation key (a later install).
    # Before it, the node's pack trust is put back as a version before pack-trust/ kept it (in
    # the configuration folder itself, root's): the install moves it into its folder.
    node.sh(
        "cd /etc/appliance && echo '# kept from before' >> pack-trust/pack_signers.revoked && "
        "mv pack-trust/pack_signers pack-trust/pack_signers.revoked . && rmdir pack-trust && "
        "chown root:root pack_signers pack_signers.revoked",
        check=True,
    )
    put(node, "/tmp/pack_signers", signers.read_bytes())
    again = install(
        node, "/var/tmp/bundle-1.1.0/appliance-1.1.0", "--pack-signers /tmp/pack_signers"
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    layout = node.sh(
        "ls /etc/appliance; stat -c '%U %n' /etc/appliance/pack-trust /etc/appliance/pack-trust/*; "
        "cat /etc/appliance/pack-trust/pack_signers.revoked",
        check=True,
    ).stdout
    assert "appliance /etc/appliance/pack-trust\n" in layout, layout
    assert "appliance /etc/appliance/pack-trust/pack_signers\n" in layout, layout
    assert "# kept from before" in layout, layout  # moved, not made again
    assert "\npack_signers\n" not in f"\n{layout}", layout
    revoked = tmp_path / "revoked"
    revoked.write_text(signer.public.openssh_line() + "\n")
    update = tmp_path / "revoke.trust"
    made = run("appliance", "trust", "make", "--role", "pack", "--serial", "1",
               "--allowed-signers", signers, "--revoked", revoked,
               "--key", pack_trust_key, "--output", update)  # fmt: skip
    assert made.returncode == 0, made.stderr
    put(node, "/tmp/revoke.trust", update.read_bytes())
    applied = node.sh("appliance trust apply /tmp/revoke.trust")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    imported = node.sh(f"appliance import {USB}/results-2.pack")
    assert imported.returncode == 3, imported.stderr
    assert "revoked" in imported.stderr
    admin = node.sh("appliance token create ops-gina --role admin", check=True).stdout.strip()
    time.sleep(1.0)
    node.sh(f"cp {USB}/results-2.pack /tmp/upload-2.pack", check=True)
    uploaded = https(
        node, "/api/v1/data/packs", method="POST", token=admin, body="/tmp/upload-2.pack"
    )
    assert uploaded["status"] == 422, uploaded
    assert "revoked" in str(uploaded["body"])
    stock = node.sh(
        f"mkdir -p /tmp/p && tar -xf {USB}/results-2.pack -C /tmp/p pack.json pack.json.sig && "
        "ssh-keygen -Y verify -f /etc/appliance/pack-trust/pack_signers -I ml@workstation "
        "-n appliance-result-pack -s /tmp/p/pack.json.sig -r /etc/appliance/pack-trust/pack_signers.revoked "
        "< /tmp/p/pack.json"
    )
    assert stock.returncode != 0, stock.stdout + stock.stderr


def test_the_importer_service_applies_a_pack_trust_update_before_the_packs_beside_it(
    node: Node, carried: Path, signer: Signer, pack_trust_key: Path, tmp_path: Path
) -> None:
    """A new workstation key is trusted by an update signed by the pack trust key, carried on the
    stick and copied into the inbox with a pack the new key signed: the installed importer
    service (the appliance user, the rest of the system read-only) applies the update first
    and imports the pack; a bundle update dropped beside them is refused there. Runs after the
    revocation test, whose update (serial 1) left the node trusting the pack trust key."""
    newcomer = make_signer(tmp_path / "ws2", "ml-2@workstation")
    signers = tmp_path / "pack_signers"
    signers.write_text(newcomer.allowed_signers.read_text() + pack_trust_line(pack_trust_key))
    revoked = tmp_path / "revoked"
    revoked.write_text(signer.public.openssh_line() + "\n")  # the lost key stays revoked
    update = tmp_path / "ws2.trust"
    made = run("appliance", "trust", "make", "--role", "pack", "--serial", "2",
               "--allowed-signers", signers, "--revoked", revoked,
               "--key", pack_trust_key, "--output", update)  # fmt: skip
    assert made.returncode == 0, made.stderr
    tables = make_tables(
        tmp_path / "tables", seed=12, generated_at=datetime(2026, 11, 3, tzinfo=UTC)
    )
    pack = make_pack(tables, newcomer, tmp_path / "results-ws2.pack")
    carry(carried, "results-ws2.pack", pack.read_bytes())
    carry(carried, "ws2.trust", update.read_bytes())
    before = node.sh("readlink /var/lib/appliance/current", check=True).stdout.strip()
    # As an admin copies them from the stick: the pack first, then the update, then a bundle
    # update (rotate.trust, of role bundle) that has no business in an inbox.
    node.sh(
        f"cp {USB}/results-ws2.pack {USB}/ws2.trust {USB}/rotate.trust /srv/appliance/inbox/",
        check=True,
    )
    handled = (
        "test -e /srv/appliance/inbox/done/results-ws2.pack && "
        "test -e /srv/appliance/inbox/rejected/rotate.trust"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and node.sh(handled).returncode != 0:
        time.sleep(2)
    listing = node.sh("ls -R /srv/appliance/inbox").stdout
    journal = node.sh(
        "systemctl status appliance-importer --no-pager | head -5; "
        "journalctl -u appliance-importer --no-pager -n 60"
    ).stdout
    done = node.sh("ls -1 /srv/appliance/inbox/done").stdout.split()
    assert {"ws2.trust", "results-ws2.pack"} <= set(done), listing + journal
    reason = node.sh("cat /srv/appliance/inbox/rejected/rotate.trust.reason.txt", check=True)
    assert reason.stdout.startswith("wrong-role: "), reason.stdout
    # The update came first: the pack was imported, not refused for its then unknown signer.
    applied = journal.index("ws2.trust applied: role pack serial 1 -> 2")
    assert journal.index("results-ws2.pack imported as", applied) > applied, journal
    after = node.sh("readlink /var/lib/appliance/current", check=True).stdout.strip()
    assert after != before
    shown = node.sh("appliance trust show --json", check=True).stdout
    roles = {role["role"]: role for role in json.loads(shown)["roles"]}
    assert roles["pack"]["serial"] == 2, shown
    assert [key["principals"] for key in roles["pack"]["keys"]] == [
        ["ml-2@workstation"],
        ["pack-trust"],
    ]
    assert [key["fingerprint"] for key in roles["pack"]["revoked"]] == [signer.public.fingerprint]
    history = node.sh("cat /var/lib/appliance/history.jsonl", check=True).stdout.splitlines()
    events = [json.loads(line) for line in history]
    trusted = [e for e in events if e.get("event") == "trust-update"]
    assert trusted and trusted[-1]["serial"] == 2, trusted[-1:]
    refused = [e for e in events if e.get("event") == "trust-update-refused"]
    assert refused and refused[-1]["reason"] == "wrong-role", refused[-1:]
