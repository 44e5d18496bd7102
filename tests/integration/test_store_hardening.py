"""The store under a damaged audit trail, bit rot, a full or read-only disk, and a clock in the future.

Each test reproduces a defect found when the appliance was attacked (issue: hardening) with the
real `appliance` command, real DuckDB and real ssh-keygen signatures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.data.importer import FREE_SPACE_FACTOR
from tests.conftest import Signer, current_of, import_into, make_pack, make_tables, run
from tests.packs import flip_byte


@pytest.fixture
def store_with_two(tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer) -> Path:
    """A data dir with v0001 (good_pack) and v0002 (newer_pack, current)."""
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    return data_dir


# --- defect 2: the audit trail decides nothing -------------------------------------------------


def test_a_corrupt_first_history_line_never_deletes_a_published_version(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    history = data_dir / "history.jsonl"
    flip_byte(history, history.read_bytes().index(b'"import"') + 2)  # "import" -> "hmport"

    again = import_into(data_dir, newer_pack, signer, check=False)
    assert again.returncode == 0, again.stderr
    assert "removed v0001" not in again.stderr
    assert "audit trail damaged at line 1" in again.stderr  # noted, never acted on
    assert (data_dir / "versions" / "v0001" / "data.duckdb").is_file()
    versions = json.loads(run("appliance", "versions", "--data-dir", data_dir, "--json").stdout)
    assert [v["version"] for v in versions["versions"]] == ["v0001", "v0002"]

    replay = import_into(data_dir, good_pack, signer, check=False)
    assert replay.returncode == 3
    assert "already imported as v0001" in replay.stderr
    verify = run("appliance", "history", "verify", "--data-dir", data_dir)
    assert verify.returncode == 1
    assert verify.stdout.startswith(
        "audit trail damaged at line 2: prev_sha256 does not match the line before it"
    )


def test_history_verify_names_the_first_bad_line(store_with_two: Path) -> None:
    intact = run("appliance", "history", "verify", "--data-dir", store_with_two)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.startswith("audit trail intact: 2 line(s)")

    history = store_with_two / "history.jsonl"
    lines = history.read_bytes().splitlines(keepends=True)
    history.write_bytes(lines[1])  # the first line removed
    damaged = run("appliance", "history", "verify", "--data-dir", store_with_two, "--json")
    assert damaged.returncode == 1
    report = json.loads(damaged.stdout)
    assert (report["ok"], report["first_bad_line"]) == (False, 1)


def test_a_replay_is_refused_even_with_the_trail_gone(
    store_with_two: Path, good_pack: Path, signer: Signer
) -> None:
    (store_with_two / "history.jsonl").unlink()
    replay = import_into(store_with_two, good_pack, signer, check=False)
    assert replay.returncode == 3
    assert "already imported as v0001" in replay.stderr


# --- defect 9: bit rot in a published version --------------------------------------------------


def test_every_version_is_sealed_with_its_checksums_and_stock_tools_agree(
    store_with_two: Path,
) -> None:
    folder = store_with_two / "versions" / "v0001"
    listed = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in listed) == sorted(
        p.name for p in folder.iterdir() if p.name != "SHA256SUMS"
    )
    stock = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True)
    assert stock.returncode == 0, stock.stdout
    checked = run("appliance", "versions", "--verify", "--data-dir", store_with_two)
    assert checked.returncode == 0, checked.stderr
    assert "v0001: ok" in checked.stdout and "v0002: ok" in checked.stdout


@pytest.mark.parametrize("name", ["answers.bin", "data.duckdb", "pack.json"])
def test_versions_verify_finds_one_flipped_byte(store_with_two: Path, name: str) -> None:
    target = store_with_two / "versions" / "v0001" / name
    flip_byte(target, target.stat().st_size // 2)
    checked = run("appliance", "versions", "--verify", "--data-dir", store_with_two, "--json")
    assert checked.returncode == 1
    report = {v["version"]: v for v in json.loads(checked.stdout)["versions"]}
    assert report["v0001"]["problems"] == [f"{name} does not match its SHA-256"]
    assert report["v0002"]["ok"]
    assert "roll back to a good version" in checked.stderr


# --- defect 5: a pack dated in the future ------------------------------------------------------


def test_a_pack_generated_in_the_future_is_refused(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    tables = make_tables(tmp_path / "tables", generated_at=future)
    pack = make_pack(tables, signer, tmp_path / "future.pack")
    refused = import_into(tmp_path / "data", pack, signer, check=False)
    assert refused.returncode == 3
    assert "more than 24 h after this node's clock" in refused.stderr
    assert len(refused.stderr.strip().splitlines()[-1:]) == 1
    assert current_of(tmp_path / "data") is None
    rejection = json.loads(next((tmp_path / "data" / "rejected").glob("*.json")).read_text())
    assert rejection["reason"] == "future"

    allowed = run(
        "appliance", "import", pack, "--data-dir", tmp_path / "data",
        "--signers", signer.allowed_signers, "--max-future-hours", str(31 * 24),
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr


# --- defect 3: a full disk is the node's fault, not the pack's ---------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> object:
    """A 20 MB tmpfs mounted for the test (CI runs as root); skipped where mounts are refused."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def big_pack(tmp_path: Path, signer: Signer) -> Path:
    """A pack of a few MB: passes the free-space check of a 20 MB disk, but not its build."""
    tables = tmp_path / "big-tables"
    from ml_workstation.demo import DemoSpec, generate_demo

    generate_demo(
        tables,
        DemoSpec(items=400, days=365, seed=3, generated_at=datetime(2026, 11, 1, tzinfo=UTC)),
    )
    return make_pack(tables, signer, tmp_path / "big.pack")


class DiskFiller:
    """Fills a file system to within SLACK bytes once an import starts (another process's doing).

    The import's early free-space check has passed by then, so the disk runs out during the copy
    or the build: the fault must surface as a fault of the node, not as a refused pack.
    """

    SLACK = 64 << 10  # room left for the audit trail's `fault` line

    def __init__(self, mount: Path, data_dir: Path) -> None:
        self.filler = mount / "filler"
        self.staging = data_dir / "staging"
        self.filled = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)

    def _fill(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.staging.is_dir() and any(self.staging.iterdir()):
                with self.filler.open("wb", buffering=0) as out:
                    try:
                        while True:  # the import goes on writing too: fill until the disk says no
                            out.write(bytes(256 << 10))
                    except OSError:
                        out.truncate(max(0, out.tell() - self.SLACK))
                self.filled.set()
                return
            time.sleep(0.001)

    def __enter__(self) -> DiskFiller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._thread.join(timeout=60)


def test_a_full_disk_is_a_fault_not_a_refusal(
    tmp_path: Path, small_tmpfs: Path, signer: Signer
) -> None:
    pack = big_pack(tmp_path, signer)
    data_dir = small_tmpfs / "data"
    data_dir.mkdir()
    with DiskFiller(small_tmpfs, data_dir) as filler:
        done = import_into(data_dir, pack, signer, check=False)
    assert filler.filled.is_set(), "the disk was not filled while the import ran"
    assert done.returncode == 4, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "failed on this node" in last and "free disk space" in last
    assert "Traceback" not in done.stderr
    assert list((data_dir / "staging").iterdir()) == []
    assert not list((data_dir / "rejected").iterdir())
    events = [json.loads(line) for line in (data_dir / "history.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["fault"]
    assert events[0]["reason"] == "disk-full"

    filler.filler.unlink()
    retried = import_into(data_dir, pack, signer, check=False)
    assert retried.returncode == 0, retried.stderr


def test_a_pack_too_big_for_the_free_space_is_refused_before_any_work(
    tmp_path: Path, small_tmpfs: Path, signer: Signer
) -> None:
    pack = big_pack(tmp_path, signer)
    data_dir = small_tmpfs / "data"
    data_dir.mkdir()
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(bytes(free - 2 * pack.stat().st_size))
    done = import_into(data_dir, pack, signer, check=False)
    assert done.returncode == 4
    assert (
        "not enough free space" in done.stderr and f"{FREE_SPACE_FACTOR}x the pack" in done.stderr
    )


def test_watch_leaves_a_pack_in_the_inbox_when_the_disk_is_full(
    tmp_path: Path, small_tmpfs: Path, signer: Signer
) -> None:
    pack = big_pack(tmp_path, signer)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dropped = Path(shutil.copy(pack, inbox / "results.pack"))
    old = time.time() - 60
    os.utime(dropped, (old, old))
    data_dir = small_tmpfs / "data"
    data_dir.mkdir()
    with DiskFiller(small_tmpfs, data_dir) as filler:
        done = run(
            "appliance", "watch", inbox, "--once", "--interval", "0.2", "--settle", "0",
            "--data-dir", data_dir, "--signers", signer.allowed_signers,
        )  # fmt: skip
    assert filler.filled.is_set()
    assert done.returncode == 3, done.stderr
    assert "results.pack waits" in done.stderr and "free disk space" in done.stderr
    assert dropped.is_file()
    assert not (inbox / "rejected").exists()


# --- defect 13: a read-only data dir ----------------------------------------------------------


@pytest.fixture
def read_only_store(tmp_path: Path, good_pack: Path, signer: Signer) -> object:
    """A data dir with v0001, bind-mounted read-only (CI runs as root)."""
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(data_dir), str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_data_dir_is_one_line_and_exit_4(
    read_only_store: Path, newer_pack: Path, signer: Signer
) -> None:
    for argv in (
        ("import", newer_pack, "--signers", signer.allowed_signers),
        ("rollback", "v0001"),
    ):
        done = run("appliance", *argv, "--data-dir", read_only_store)
        assert done.returncode == 4, (argv, done.stderr)
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0], (argv, done.stderr)
    listed = run("appliance", "versions", "--data-dir", read_only_store)
    assert listed.returncode == 0 and "v0001" in listed.stdout


def test_a_history_write_that_fails_after_the_swap_is_not_reported_as_a_failed_import(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    head = data_dir / "history.head"
    head.unlink()
    head.mkdir()  # the trail's head cannot be rewritten: the write after the swap fails
    done = import_into(data_dir, newer_pack, signer, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["v0002"]
    assert "v0002 is published, but its history line could not be written" in done.stderr
    assert (data_dir / ".publishing").read_text().strip() == "v0002"  # left for recovery
    head.rmdir()
    replay = import_into(data_dir, newer_pack, signer, check=False)
    assert replay.returncode == 3 and "already imported as v0002" in replay.stderr
    assert not (data_dir / ".publishing").exists()
    assert current_of(data_dir) == "v0002"
