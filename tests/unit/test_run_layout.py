"""The server's run folders: one per server run, a live run's left alone, a stopped run's removed."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.data.run_layout import RunFolders, prepare_run_dir
from appliance.errors import ConfigError
from appliance.settings import load_server_settings
from server.metrics import WorkerMetrics, render_prometheus


def test_the_settings_and_the_server_use_the_same_folders(tmp_path: Path) -> None:
    settings = load_server_settings({"APPLIANCE_DATA_DIR": str(tmp_path)})
    assert settings.folders == RunFolders(tmp_path, "local")
    assert settings.run_dir == tmp_path / "run" / "local"
    assert settings.folders.cache == tmp_path / "cache"
    named = load_server_settings(
        {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_RUN_NAME": "unit"}
    )
    assert named.run_dir == tmp_path / "run" / "unit"


@pytest.mark.parametrize("name", ["", "Unit", "../up", "a/b", "-x", "x" * 33])
def test_a_run_name_that_cannot_name_a_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="run name"):
        prepare_run_dir(tmp_path, name)
    if name:
        with pytest.raises(ConfigError, match="APPLIANCE_RUN_NAME"):
            load_server_settings({"APPLIANCE_RUN_NAME": name})


def test_a_stopped_runs_state_is_dropped_at_the_next_start(tmp_path: Path) -> None:
    old = prepare_run_dir(tmp_path, "old")
    worker = WorkerMetrics(old.folders.metrics, "101")
    worker.inc("appliance_cache_hits_total")
    worker.flush()
    old.folders.read_limiter.write_bytes(bytes(16))
    old.folders.uploads.mkdir()
    (old.folders.uploads / "upload-x1y2.pack").write_bytes(b"half a pack")
    old.release()  # the old server stopped

    new = prepare_run_dir(tmp_path, "new")
    assert not old.folders.run.exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")) == [
        "new"
    ]
    assert render_prometheus(new.folders.metrics) == ""


def test_a_run_of_the_same_name_restarts_from_nothing(tmp_path: Path) -> None:
    first = prepare_run_dir(tmp_path, "unit")
    first.folders.read_limiter.write_bytes(bytes(16))
    first.release()
    again = prepare_run_dir(tmp_path, "unit")
    assert again.folders == first.folders
    assert not again.folders.read_limiter.exists()


def test_a_live_runs_upload_survives_a_second_server_starting(tmp_path: Path) -> None:
    """An upgrade starts the new server beside the old one: the old one's upload must stay."""
    old = prepare_run_dir(tmp_path, "old")
    old.folders.uploads.mkdir()
    upload = old.folders.uploads / "upload-x1y2.pack"
    upload.write_bytes(b"half a pack, still arriving")

    new = prepare_run_dir(tmp_path, "new")
    assert upload.read_bytes() == b"half a pack, still arriving"
    assert new.folders.run != old.folders.run


def test_a_name_a_live_server_runs_under_is_refused(tmp_path: Path) -> None:
    live = prepare_run_dir(tmp_path, "unit")
    with pytest.raises(ConfigError, match="in use by another server"):
        prepare_run_dir(tmp_path, "unit")
    assert live.folders.run.is_dir()


def test_the_lock_is_held_by_another_process_too(tmp_path: Path) -> None:
    """flock is per open file: a server in another process (another container) is seen as live."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from appliance.data.run_layout import prepare_run_dir
        claim = prepare_run_dir(Path({str(tmp_path)!r}), "other")
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "ready\n"
        prepare_run_dir(tmp_path, "mine")
        assert RunFolders(tmp_path, "other").run.is_dir()
    finally:
        other.communicate("\n", timeout=10)
    prepare_run_dir(tmp_path, "third")
    assert not RunFolders(tmp_path, "other").run.exists(), "its process ended: the folder is stale"


def test_an_older_versions_flat_run_files_are_left_to_it(tmp_path: Path) -> None:
    legacy = tmp_path / "run" / "uploads"
    legacy.mkdir(parents=True)
    (legacy / "upload-a.pack").write_bytes(b"an older server's upload")
    prepare_run_dir(tmp_path, "new")
    assert (legacy / "upload-a.pack").exists()


def test_prepare_makes_private_folders(tmp_path: Path) -> None:
    folders = prepare_run_dir(tmp_path / "data", "unit").folders
    for folder in (folders.runs, folders.run, folders.metrics):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_stopped_runs_damage_notices_make_the_next_start_hash_again(tmp_path: Path) -> None:
    run = prepare_run_dir(tmp_path, "old")
    run.folders.damage_notice("v0002").write_text("answers.bin changed")
    stamp = run.folders.check_stamp("v0002")
    stamp.parent.mkdir(parents=True)
    (tmp_path / "versions" / "v0002").mkdir(parents=True)
    stamp.write_text("{}")
    run.release()
    prepare_run_dir(tmp_path, "new")
    assert not stamp.exists()
