"""The support bundle, made for real on a node laid out under tmp_path: what is in it, and what never is.

The node's folders (configuration, data, logs, inboxes) are moved under tmp_path with the
environment variables the appliance reads. Secrets are planted where a node has them (the
admin and viewer token files, the TLS key, a password-like setting in server.env and in the
container's environment, a token that leaked into an install log): none may be in the archive.
The bundle is made with the server down and the data dir damaged, with the server up (its
health and metrics are in), by the `appliance` command, by the wheel alone on a Python with no
site-packages (as install.sh runs it), and by `install.sh --support-bundle` from a built bundle.

The container engine is a stand-in (a script named podman on PATH, printing an inspect): the
test machine runs no appliance container. Everything else is real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.bundles import bundle_layout as layout
from appliance.support import support_bundle as sb
from tests.conftest import BIN, Signer, import_into
from tests.integration.conftest import BuiltBundle
from tests.integration.live_server import free_port, live_server

ADMIN = "admin-token-0123456789abcdefghijklmnop"
VIEWER = "viewer-token-zyxwvutsrqponmlkjihgf"
PASSWORD = "hunter2-is-not-a-password-here"
CONTAINER_SECRET = "container-only-secret-55555555"
KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDfake"
PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
SECRETS = (ADMIN, VIEWER, PASSWORD, CONTAINER_SECRET, KEY_BODY)


def node_tree(root: Path, port: int) -> dict[str, str]:
    """A node's folders under root, with secrets where a node keeps them; its environment."""
    config, data, logs, inbox = (root / n for n in ("etc", "data", "log", "inbox"))
    for folder in (config, data, logs, inbox / sb.REJECTED_DIR):
        folder.mkdir(parents=True)
    (config / "admin.token").write_text(ADMIN + "\n")
    (config / "viewer.token").write_text(VIEWER + "\n")
    (config / "tls.key").write_text(PRIVATE_KEY)
    (config / sb.SERVER_ENV).write_text(
        f"APPLIANCE_PORT={port}\nAPPLIANCE_DB_PASSWORD={PASSWORD}\nAPPLIANCE_WORKERS=2\n"
    )
    (config / sb.INSTALLED_FILE).write_text('{"version": "1.0.0", "engine": "podman"}\n')
    (config / sb.ENGINE_FILE).write_text("podman\n")
    trail = "".join(json.dumps({"action": "install", "n": n}) + "\n" for n in range(1000))
    (logs / sb.INSTALLER_TRAIL).write_text(trail)
    (logs / "install-20261201T000000Z.log").write_text(
        f"TASK [x] ok\nthe token was {ADMIN} (a leak the bundle must not carry)\n{PRIVATE_KEY}"
    )
    (inbox / sb.REJECTED_DIR / f"cut.pack{sb.REASON_SUFFIX}").write_text("truncated: cut short\n")
    (data / "current").symlink_to("versions/v0009")  # damaged: the version is not there
    (data / sb.DATA_HISTORY).write_text("{not json\n")
    stand_in = root / "bin"
    stand_in.mkdir()
    inspect = [{"Name": "appliance-server", "Config": {"Env": [
        f"APPLIANCE_SESSION={CONTAINER_SECRET}", "PATH=/usr/bin"]}}]  # fmt: skip
    (stand_in / "podman").write_text(
        f"#!/bin/sh\n[ \"$1\" = inspect ] && echo '{json.dumps(inspect)}' && exit 0\necho images\n"
    )
    (stand_in / "podman").chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{stand_in}:{BIN}:{os.environ['PATH']}",
        "APPLIANCE_CONFIG_DIR": str(config),
        "APPLIANCE_DATA_DIR": str(data),
        "APPLIANCE_LOG_DIR": str(logs),
        "APPLIANCE_ROOT": str(root / "opt"),
        "APPLIANCE_INBOX_DIRS": str(inbox),
        "APPLIANCE_ADMIN_TOKEN": ADMIN,
    }


def members(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        top = names[0].split("/", 1)[0]
        assert all(name.startswith(f"{top}/") for name in names)
        assert top.startswith("appliance-support-")
        found = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None and member.isfile()
            found[member.name.split("/", 1)[1]] = handle.read().decode()
    return found


def assert_no_secret(found: dict[str, str]) -> None:
    for name, text in found.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} is in {name}"


def support_bundle(env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "appliance"), "support-bundle", "--out", str(out), "--lines", "50"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_with_the_server_down_and_the_data_damaged_it_says_so_and_carries_no_secret(
    tmp_path: Path,
) -> None:
    env = node_tree(tmp_path / "node", free_port())
    out = tmp_path / "support.tar.gz"
    result = support_bundle(env, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "Traceback" not in result.stderr
    found = members(out)
    assert_no_secret(found)
    for name in ("README.txt", "node.json", "installed/installed.json", "settings/server.env",
                 "data/store.txt", "server/health-ready.txt", "container/inspect.json",
                 "refusals.txt", "installed/logs/install-20261201T000000Z.log"):  # fmt: skip
        assert name in found, sorted(found)
    assert "no answer on http://127.0.0.1:" in found["server/health-ready.txt"]
    assert "current -> versions/v0009" in found["data/store.txt"]
    assert len(found[f"installed/{sb.INSTALLER_TRAIL}"].splitlines()) == 50  # the last 50
    assert '"n": 999' in found[f"installed/{sb.INSTALLER_TRAIL}"]
    assert "APPLIANCE_DB_PASSWORD=<redacted>" in found["settings/server.env"]
    assert "APPLIANCE_WORKERS=2" in found["settings/server.env"]  # a plain setting stays
    inspected = json.loads(found["container/inspect.json"])
    assert inspected[0]["Config"]["Env"] == ["APPLIANCE_SESSION=<redacted>", "PATH=<redacted>"]
    assert "<redacted> private key" in found["installed/logs/install-20261201T000000Z.log"]
    assert "truncated: cut short" in found["refusals.txt"]
    facts = json.loads(found["node.json"])
    assert facts["cpus"] == os.cpu_count() and facts["memory_bytes"]["MemTotal"] > 0
    readme = found["README.txt"]
    assert "What is inside:" in readme and "  container/inspect.json" in readme
    assert not any(p.name.startswith(".support") for p in tmp_path.iterdir())  # no partial
    assert out.stat().st_mode & 0o777 == 0o600


def test_with_the_server_up_its_health_and_metrics_are_in(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    port = free_port()
    env = node_tree(tmp_path / "node", port)
    data = Path(env["APPLIANCE_DATA_DIR"])
    shutil.rmtree(data)
    import_into(data, good_pack, signer)
    with live_server(data, signer.allowed_signers, port=port, env={"APPLIANCE_ADMIN_TOKEN": ADMIN}):
        result = support_bundle(env, tmp_path / "up.tar.gz")
    assert result.returncode == 0, result.stderr
    found = members(tmp_path / "up.tar.gz")
    assert_no_secret(found)
    assert found["server/health-ready.txt"].startswith("HTTP 200\n")
    assert found["server/metrics.txt"].startswith("HTTP 200\n")
    assert "# TYPE" in found["server/metrics.txt"]
    assert "v0001" in found["data/versions.txt"]  # appliance versions, run on the store
    assert "current -> versions/v0001" in found["data/store.txt"]


@pytest.mark.parametrize(
    ("where", "code", "words"),
    [
        ("exists", 2, "already exists: give a new file"),
        ("no-folder", 2, "no folder"),
        ("proc", 4, "writing the support bundle"),
    ],
)
def test_a_bad_out_is_one_error_line(tmp_path: Path, where: str, code: int, words: str) -> None:
    env = node_tree(tmp_path / "node", free_port())
    (tmp_path / "exists.tar.gz").write_text("keep me")
    out = {
        "exists": tmp_path / "exists.tar.gz",
        "no-folder": tmp_path / "absent" / "x.tar.gz",
        "proc": Path("/proc/appliance-support.tar.gz"),  # the kernel's: nothing can be made there
    }[where]
    result = support_bundle(env, out)
    assert result.returncode == code, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if "error" in ln.lower()]
    assert line == result.stderr.strip().splitlines()[-1] and words in line, result.stderr
    assert (tmp_path / "exists.tar.gz").read_text() == "keep me"


def test_the_wheel_alone_makes_it_with_no_site_packages(
    tmp_path: Path, unpacked_bundle: Path
) -> None:
    """What install.sh runs: the standard library and the bundle's appliance wheel, nothing else."""
    env = node_tree(tmp_path / "node", free_port())
    [wheel] = (unpacked_bundle / "wheels").glob("appliance-*-py3-none-any.whl")
    script = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from appliance.support.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "alone.tar.gz"
    result = subprocess.run(
        [shutil.which("python3") or "python3", "-S", "-c", script, str(wheel), str(out)],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_no_secret(members(out))


def test_install_sh_writes_it_after_verifying_the_bundle(
    tmp_path: Path, unpacked_bundle: Path, built_bundle: BuiltBundle
) -> None:
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root only")
    env = node_tree(tmp_path / "node", free_port())
    folder = tmp_path / "stick"
    folder.mkdir()
    script = unpacked_bundle / layout.INSTALL_SCRIPT
    argv = [
        "bash",
        str(script),
        "--support-bundle",
        str(folder),
        "--signers",
        str(built_bundle.allowed_signers),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "install.sh: support bundle written: " in result.stderr
    [archive] = folder.glob("appliance-support-*.tar.gz")
    assert_no_secret(members(archive))
    missing = subprocess.run(
        ["bash", str(script), "--support-bundle", str(tmp_path / "absent")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"install.sh: error: --support-bundle {tmp_path / 'absent'}: no such folder"
    )
