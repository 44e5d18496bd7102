"""restore.yml's trust step, run for real with sh: what it puts back, and what it never does.

The step is shell in the playbook; this test renders that very task (its Jinja: variables and
`basename`) and runs it on folders under tmp_path laid out as a node's. What was revoked since
the backup stays revoked, the serial never goes down (no trust update applied since can be
replayed), and a link the appliance user put in its own pack-trust/ is replaced, never written
through or read.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

RESTORE = Path(__file__).resolve().parents[2] / "ansible" / "restore.yml"
TASK = "Put back the trust of both roles (appliance_restore_trust=true)"


def trust_task() -> str:
    """The shell of restore.yml's trust step."""
    play = yaml.safe_load(RESTORE.read_text())[0]
    for task in play["tasks"]:
        for inner in task.get("block", []):
            if inner.get("name") == TASK:
                command: str = inner["ansible.builtin.shell"]["cmd"]
                return command
    pytest.fail(f"restore.yml has no task {TASK!r}")


def run_trust_step(staging: Path, config: Path) -> subprocess.CompletedProcess[str]:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 (shell, not HTML)
    environment.filters["basename"] = os.path.basename
    variables: dict[str, Any] = {
        "appliance_restore_staging": str(staging),
        "appliance_restore_config": "etc/appliance",
        "appliance_config_dir": str(config),
        "appliance_pack_trust_dir": str(config / "pack-trust"),
        "appliance_uid": os.getuid(),
    }
    script = environment.from_string(trust_task()).render(variables)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, Path]:
    """(the unpacked backup, the node's configuration folder), both with trust of two roles."""
    backup = tmp_path / "staging" / "etc" / "appliance"
    write(backup / "bundle_signers", "release ssh-ed25519 AAAAold\n")
    write(backup / "bundle_signers.revoked", "ssh-ed25519 AAAArevoked-before-backup\n")
    write(backup / "bundle_signers.serial", "3\n")
    write(backup / "pack-trust" / "pack_signers", "ml ssh-ed25519 AAAAml\n")
    write(backup / "pack-trust" / "pack_signers.revoked", "")
    write(backup / "pack-trust" / "pack_signers.serial", "7\n")
    config = tmp_path / "etc"
    write(config / "bundle_signers", "release ssh-ed25519 AAAAnew\n")
    write(config / "bundle_signers.revoked", "ssh-ed25519 AAAArevoked-since\n")
    write(config / "bundle_signers.serial", "5\n")
    write(config / "pack-trust" / "pack_signers.serial", "2\n")
    return tmp_path / "staging", config


def test_restore_keeps_revocations_made_since_and_never_lowers_a_serial(
    node: tuple[Path, Path],
) -> None:
    staging, config = node
    result = run_trust_step(staging, config)
    assert result.returncode == 0, result.stderr
    assert (config / "bundle_signers").read_text() == "release ssh-ed25519 AAAAold\n"
    assert (config / "bundle_signers.revoked").read_text().splitlines() == [
        "ssh-ed25519 AAAArevoked-since",
        "ssh-ed25519 AAAArevoked-before-backup",
    ]
    assert (config / "bundle_signers.serial").read_text().strip() == "5"  # not the backup's 3
    assert (config / "pack-trust" / "pack_signers.serial").read_text().strip() == "7"
    assert (config / "pack-trust" / "pack_signers").read_text() == "ml ssh-ed25519 AAAAml\n"
    assert sorted(p.name for p in config.iterdir() if p.name.startswith(".")) == []  # no scratch
    assert str(config / "pack-trust" / "pack_signers") in result.stdout.split()


def test_restore_replaces_a_link_in_pack_trust_and_never_writes_or_reads_through_it(
    node: tuple[Path, Path], tmp_path: Path
) -> None:
    staging, config = node
    secret = write(tmp_path / "shadow", "root:secret\n")
    for name in ("pack_signers", "pack_signers.revoked", "pack_signers.serial"):
        target = config / "pack-trust" / name
        target.unlink(missing_ok=True)
        target.symlink_to(secret)
    result = run_trust_step(staging, config)
    assert result.returncode == 0, result.stderr
    assert secret.read_text() == "root:secret\n"  # not written through
    for name in ("pack_signers", "pack_signers.revoked", "pack_signers.serial"):
        path = config / "pack-trust" / name
        assert not path.is_symlink()
        assert "secret" not in path.read_text()  # not read through either
    assert (config / "pack-trust" / "pack_signers.serial").read_text().strip() == "7"


def test_a_backup_from_before_pack_trust_puts_its_pack_signers_in_pack_trust(
    node: tuple[Path, Path],
) -> None:
    staging, config = node
    old = staging / "etc" / "appliance"
    for name in ("pack_signers", "pack_signers.revoked", "pack_signers.serial"):
        (old / "pack-trust" / name).rename(old / name)
    (old / "pack-trust").rmdir()
    result = run_trust_step(staging, config)
    assert result.returncode == 0, result.stderr
    assert (config / "pack-trust" / "pack_signers").read_text() == "ml ssh-ed25519 AAAAml\n"
    assert not (config / "pack_signers").exists()
