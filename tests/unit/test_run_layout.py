"""The server's run folder: laid out in one place, cleared of an earlier run's state, nothing else."""

from __future__ import annotations

import stat
from pathlib import Path

from appliance.data.run_layout import RunFolders, prepare_run_dir
from appliance.settings import load_server_settings
from server.metrics import WorkerMetrics, render_prometheus


def test_the_settings_and_the_server_use_the_same_folders(tmp_path: Path) -> None:
    settings = load_server_settings({"APPLIANCE_DATA_DIR": str(tmp_path)})
    assert settings.folders == RunFolders(tmp_path)
    assert settings.run_dir == tmp_path / "run"
    assert settings.folders.cache == tmp_path / "cache"


def test_prepare_drops_an_earlier_runs_state_but_nothing_else(tmp_path: Path) -> None:
    folders = prepare_run_dir(tmp_path)
    worker = WorkerMetrics(folders.metrics, "101")
    worker.inc("appliance_cache_hits_total")
    worker.flush()
    (folders.metrics / ".worker-102.json.k2j3.tmp").write_bytes(b'{"form')
    (folders.metrics / "notes.txt").write_text("not ours")
    folders.read_limiter.write_bytes(bytes(16))
    folders.admin_limiter.write_bytes(bytes(16))
    folders.uploads.mkdir()
    (folders.uploads / "upload-x1y2.pack").write_bytes(b"half a pack")
    (folders.uploads / "kept.txt").write_text("not ours")

    assert prepare_run_dir(tmp_path) == folders
    assert [path.name for path in folders.metrics.iterdir()] == ["notes.txt"]
    assert render_prometheus(folders.metrics) == ""
    assert not folders.read_limiter.exists() and not folders.admin_limiter.exists()
    assert [path.name for path in folders.uploads.iterdir()] == ["kept.txt"]


def test_prepare_makes_private_folders(tmp_path: Path) -> None:
    folders = prepare_run_dir(tmp_path / "data")
    for folder in (folders.run, folders.metrics):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_prepare_drops_the_damage_notices_of_an_earlier_run(tmp_path: Path) -> None:
    folders = prepare_run_dir(tmp_path)
    folders.damage_notice("v0002").write_text("answers.bin changed")
    prepare_run_dir(tmp_path)
    assert not folders.damage_notice("v0002").exists()
