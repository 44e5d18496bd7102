"""A version checked once is not hashed again at every worker start, unless its files changed.

The import leaves a stamp of the files it just sealed (appliance/data/version_integrity.py); a
worker whose version still has those file facts opens it without hashing gigabytes, and any
change a file can undergo but rot in place (rewritten, replaced, touched, chmod'ed) makes it
hash again, and find the damage.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.data import version_integrity
from appliance.data.run_layout import RunFolders, prepare_run_dir
from appliance.data.store import DataStore
from appliance.data.version_integrity import stamp_holds, write_check_stamp
from server import data as server_data
from server.data import DataSource
from tests.conftest import Signer, import_into


@pytest.fixture
def store(tmp_path: Path, good_pack: Path, signer: Signer) -> DataStore:
    import_into(tmp_path / "data", good_pack, signer)
    return DataStore(tmp_path / "data")


def hashed_versions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions the server hashes from now on (check_before_serving, counted)."""
    seen: list[str] = []
    real = server_data.check_before_serving

    def counted(vid: str, path: Path) -> None:
        seen.append(vid)
        real(vid, path)

    monkeypatch.setattr(server_data, "check_before_serving", counted)
    return seen


def open_current(store: DataStore) -> DataSource:
    source = DataSource(store, "256MB", 1, RunFolders(store.root))
    source.refresh()
    return source


def test_the_import_leaves_a_stamp_that_holds(store: DataStore) -> None:
    stamp = RunFolders(store.root).check_stamp("v0001")
    assert stamp.is_file()
    assert oct(stamp.stat().st_mode & 0o777) == "0o600"
    assert stamp_holds(stamp, store.versions_dir / "v0001")


def test_a_worker_serves_a_stamped_version_without_hashing(
    store: DataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = hashed_versions(monkeypatch)
    source = open_current(store)
    try:
        handle = source.current()
        assert handle is not None
        assert handle.vid == "v0001"
    finally:
        source.close()
    assert hashed == []


@pytest.mark.parametrize("change", ["touch", "chmod", "rewrite"])
def test_a_changed_file_is_hashed_again_and_damage_found(
    store: DataStore, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    target = store.versions_dir / "v0001" / "answers.bin"
    if change == "touch":
        os.utime(target, ns=(1, 1))
    elif change == "chmod":
        target.chmod(0o644)
    else:
        target.chmod(0o644)
        with target.open("r+b") as handle:
            handle.seek(100)
            byte = handle.read(1)
            handle.seek(100)
            handle.write(bytes([byte[0] ^ 0xFF]))
    hashed = hashed_versions(monkeypatch)
    source = open_current(store)
    try:
        served = source.current()
    finally:
        source.close()
    assert hashed == ["v0001"]
    if change == "rewrite":
        assert served is None
        assert source.damaged is not None
        assert "answers.bin does not match its SHA-256" in source.damaged
    else:
        assert served is not None, "unchanged bytes: served after the hash, and stamped again"
        assert stamp_holds(RunFolders(store.root).check_stamp("v0001"), target.parent)


def test_a_stamp_of_another_shape_does_not_hold(store: DataStore, tmp_path: Path) -> None:
    folder = store.versions_dir / "v0001"
    stamp = tmp_path / "stamp.json"
    for content in (b"", b"[]", b'{"format": 1}', b'{"format": 2, "files": {}}', b"\xff"):
        stamp.write_bytes(content)
        assert not stamp_holds(stamp, folder), content
    write_check_stamp(stamp, folder)
    assert stamp_holds(stamp, folder)
    assert not stamp_holds(tmp_path / "missing.json", folder)


def test_stamps_of_versions_gone_are_dropped_when_the_server_starts(store: DataStore) -> None:
    folders = RunFolders(store.root)
    gone = folders.check_stamp("v0042")
    write_check_stamp(gone, store.versions_dir / "v0001")
    prepare_run_dir(store.root)
    assert not gone.exists()
    assert folders.check_stamp("v0001").exists()
    assert version_integrity.STAMP_FORMAT == 1


def test_damage_found_while_serving_drops_the_stamp(store: DataStore) -> None:
    claim = prepare_run_dir(store.root)
    folders = claim.folders
    source = open_current(store)
    try:
        handle = source.current()
        assert handle is not None
        handle.damage = "answers.bin changed since it was published (found by a CRC)"
        source._share_damage()  # what the worker's watcher does each look
    finally:
        source.close()
    assert not folders.check_stamp("v0001").exists(), "the next start hashes it again"
    write_check_stamp(folders.check_stamp("v0001"), store.versions_dir / "v0001")
    claim.release()  # the server stopped
    prepare_run_dir(store.root)  # a restart with the damage notice still there
    assert not folders.check_stamp("v0001").exists()
