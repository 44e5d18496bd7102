"""`appliance` with broken input or a broken environment: one `error:` line, a documented exit code.

Never a traceback (issue: hardening). Exit codes are those of docs/admin-guide.md: 2 usage or
configuration, 3 refused input, 4 the store or the node, 1 an unexpected error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, Signer


def appliance(
    *argv: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "appliance"), *map(str, argv)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ | (env or {})
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("[")]  # no progress
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and words in lines[0], lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "plain-file"
    path.write_text("not a folder\n")
    return path


def test_reading_commands_on_a_missing_store_name_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-store"
    for argv in (
        ("versions",),
        ("versions", "--verify"),
        ("history", "verify"),
        ("rollback", "v0001"),
    ):
        done = appliance(*argv, "--data-dir", missing)
        assert_one_error_line(done, 4, f"no data store at {missing}")
    assert not missing.exists()  # only an import creates a store


def test_an_import_into_a_data_dir_that_is_a_file(
    a_file: Path, good_pack: Path, signer: Signer
) -> None:
    done = appliance("import", good_pack, "--data-dir", a_file, "--signers", signer.allowed_signers)
    assert "Traceback" not in done.stderr and done.returncode == 2  # click's usage error
    assert done.stderr.strip().splitlines()[-1].endswith("is a file.")


def test_an_import_into_a_data_dir_below_a_file(
    a_file: Path, good_pack: Path, signer: Signer
) -> None:
    done = appliance(
        "import", good_pack, "--data-dir", a_file / "data", "--signers", signer.allowed_signers
    )
    assert_one_error_line(done, 4, "Not a directory")


def test_a_pack_that_is_a_fifo_or_empty(tmp_path: Path, signer: Signer) -> None:
    empty = tmp_path / "empty.pack"
    empty.write_bytes(b"")
    done = appliance(
        "import", empty, "--data-dir", tmp_path / "data", "--signers", signer.allowed_signers
    )
    assert_one_error_line(done, 3, "empty.pack")


@pytest.mark.parametrize(
    ("signers_kind", "code", "words"),
    [
        ("missing", 2, "does not exist"),
        ("folder", 2, "allowed"),
        ("garbage", 2, "cannot read allowed signers file"),
    ],
)
def test_a_broken_trust_file(
    tmp_path: Path, good_pack: Path, signers_kind: str, code: int, words: str
) -> None:
    signers = tmp_path / "allowed_signers"
    if signers_kind == "folder":
        signers.mkdir()
    elif signers_kind == "garbage":
        signers.write_bytes(b"\xff\xfe not a key line\n")
    done = appliance("import", good_pack, "--data-dir", tmp_path / "data", "--signers", signers)
    if signers_kind == "folder":  # click refuses a folder for a file before the command runs
        assert "Traceback" not in done.stderr and done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith("Error:")
        return
    assert_one_error_line(done, code, words)


def test_a_bad_setting_in_the_environment(tmp_path: Path, good_pack: Path, signer: Signer) -> None:
    done = appliance(
        "import", good_pack, "--data-dir", tmp_path / "data", "--signers", signer.allowed_signers,
        env={"APPLIANCE_IMPORT_MEMORY": "lots"},
    )  # fmt: skip
    assert "Traceback" not in done.stderr and done.returncode == 2
    assert "is not a memory size like 4GB" in done.stderr


def test_a_damaged_version_report_does_not_stop_versions(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    appliance("import", good_pack, "--data-dir", data_dir, "--signers", signer.allowed_signers)
    report = data_dir / "versions" / "v0001" / "import.json"
    report.chmod(0o644)
    report.write_text("{")
    listed = appliance("versions", "--data-dir", data_dir)
    assert "Traceback" not in listed.stderr and listed.returncode == 0, listed.stderr
    checked = appliance("versions", "--verify", "--data-dir", data_dir)
    assert checked.returncode == 1
    assert "v0001: DAMAGED: import.json does not match its SHA-256" in checked.stdout
