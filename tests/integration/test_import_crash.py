"""A crash at any point of an import leaves the store consistent and the next import working.

The import is killed with SIGKILL before each of its durable steps in turn (see crash_harness.py):
before the swap of `current` the old version must still be served; after it, the new one. Either
way the served version must open, staging/ must be cleaned by the next import, and that import
must succeed (or, when the crash came after the commit, refuse the same pack as a replay).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Signer, current_of, import_into

HARNESS = Path(__file__).with_name("crash_harness.py")


def import_under_harness(limit: int, log: Path, pack: Path, data_dir: Path, signer: Signer) -> int:
    argv = [
        "import",
        str(pack),
        "--data-dir",
        str(data_dir),
        "--signers",
        str(signer.allowed_signers),
    ]
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(limit), str(log), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


def served_rows(data_dir: Path) -> int:
    """Rows of fact_forecast in the served version, read the way the server reads them."""
    con = duckdb.connect(str(data_dir / "current" / "data.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM fact_forecast").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer) -> Path:
    """A store serving good_pack as v0001."""
    data_dir = tmp_path_factory.mktemp("crash") / "data"
    import_into(data_dir, good_pack, signer)
    return data_dir


@pytest.fixture(scope="module")
def crash_points(
    tmp_path_factory: pytest.TempPathFactory, base_store: Path, newer_pack: Path, signer: Signer
) -> list[str]:
    """Every step of a clean import of newer_pack, in order."""
    data_dir = tmp_path_factory.mktemp("clean") / "data"
    shutil.copytree(base_store, data_dir, symlinks=True)
    log = data_dir.parent / "steps.log"
    assert import_under_harness(0, log, newer_pack, data_dir, signer) == 0
    return log.read_text().splitlines()


def commit_index(points: list[str]) -> int:
    """1-based index of the step that swaps `current` (the commit point)."""
    for index, point in enumerate(points, start=1):
        kind, _, detail = point.partition("\t")
        if kind == "replace" and detail.endswith("/current"):
            return index
    raise AssertionError("no swap of current among the steps")


def test_there_are_enough_crash_points_in_every_stage(crash_points: list[str]) -> None:
    messages = [p.partition("\t")[2] for p in crash_points if p.startswith("progress")]
    assert any(m.startswith("verifying") for m in messages)
    assert any(m.startswith("building") for m in messages)
    assert any(m.startswith("publishing") for m in messages)
    assert len(crash_points) >= 20
    assert commit_index(crash_points) < len(crash_points)
    # The durable markers are crash points too: the seal, the publish intent, the trail's head.
    details = [p.partition("\t")[2] for p in crash_points]
    for marker in ("SHA256SUMS", ".publishing", "history.head"):
        assert any(marker in detail for detail in details), marker
    intent = next(i for i, d in enumerate(details, 1) if d.endswith("/.publishing"))
    assert intent < commit_index(crash_points)


def test_sigkill_at_every_step_leaves_a_consistent_store(
    tmp_path: Path, base_store: Path, newer_pack: Path, signer: Signer, crash_points: list[str]
) -> None:
    commit = commit_index(crash_points)
    old_rows = served_rows(base_store)
    for limit in range(1, len(crash_points) + 1):
        data_dir = tmp_path / f"kill-{limit:03d}" / "data"
        shutil.copytree(base_store, data_dir, symlinks=True)
        code = import_under_harness(
            limit, data_dir.parent / "steps.log", newer_pack, data_dir, signer
        )
        where = f"killed before step {limit}: {crash_points[limit - 1]}"
        assert code == -signal.SIGKILL, where

        expected = "v0001" if limit <= commit else "v0002"
        assert current_of(data_dir) == expected, where
        served_rows(data_dir)  # the served version opens and answers
        if limit <= commit:
            assert served_rows(data_dir) == old_rows, where

        again = import_into(data_dir, newer_pack, signer, check=False)
        if limit <= commit:
            assert again.returncode == 0, f"{where}\n{again.stderr}"
            assert current_of(data_dir) == again.stdout.split()[-1]
        else:
            assert again.returncode == 3 and "already imported" in again.stderr, where
        assert list((data_dir / "staging").iterdir()) == [], where
        history = (data_dir / "history.jsonl").read_text()
        assert history.count('"event": "import"') == 2, where
        shutil.rmtree(data_dir.parent)
