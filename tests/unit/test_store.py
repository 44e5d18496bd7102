"""DataStore: version ids, the current pointer, the audit trail, and recovery after a crash."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from appliance.data.import_report import ImportReport, SignerInfo
from appliance.data.store import DataStore
from appliance.data.store_layout import version_id, version_number
from appliance.errors import StoreError


def fake_version(store: DataStore, vid: str, **changes: Any) -> Path:
    """A published-looking version folder with an import report (no database needed here)."""
    folder = store.versions_dir / vid
    folder.mkdir(parents=True)
    report = ImportReport(
        version=vid,
        previous=None,
        pack_file="a.pack",
        pack_id=f"pack-{vid}",
        dataset_id="demo",
        model_version="m1",
        source="ensemble",
        generated_at="2026-11-01T00:00:00Z",
        created_by="mlws",
        schema_registry_version=1,
        manifest_sha256="0" * 64,
        signer=SignerInfo("ml@ws", "SHA256:x"),
        rows={"dim_item": 1},
        imported_at="2026-11-02T00:00:00Z",
        imported_by="root@node",
        forced_older=False,
    )
    (folder / "import.json").write_bytes(dataclasses.replace(report, **changes).to_bytes())
    return folder


@pytest.fixture
def store(tmp_path: Path) -> DataStore:
    store = DataStore(tmp_path / "data")
    store.ensure()
    return store


def test_version_ids_round_trip_and_reject_lookalikes() -> None:
    assert version_id(7) == "v0007"
    assert version_number("v0007") == 7
    assert version_number("v12345") == 12345
    for bad in ("v7", "x0007", "v00a7", "../v0007", "", "v"):
        assert version_number(bad) is None


def test_a_new_store_has_no_current_version(store: DataStore) -> None:
    assert store.current_vid() is None
    assert store.current() is None
    assert store.versions() == []
    assert store.next_vid() == "v0001"


def test_switching_current_is_a_symlink_swap(store: DataStore) -> None:
    fake_version(store, "v0001")
    fake_version(store, "v0002")
    store.switch_current("v0001")
    store.switch_current("v0002")
    assert os.readlink(store.current_link) == "versions/v0002"
    assert store.current_vid() == "v0002"
    assert not list(store.root.glob(".current.*"))


def test_a_current_pointing_nowhere_is_an_error(store: DataStore) -> None:
    os.symlink("versions/v0042", store.current_link)
    with pytest.raises(StoreError, match="which is not a version"):
        store.current_vid()


def test_a_current_that_is_not_a_symlink_is_an_error(store: DataStore) -> None:
    store.current_link.write_text("v0001")
    with pytest.raises(StoreError, match="not a symlink"):
        store.current_vid()


def test_next_vid_never_reuses_an_id_from_the_history(store: DataStore) -> None:
    fake_version(store, "v0001")
    store.record("import-discarded", version="v0004")
    assert store.next_vid() == "v0005"


def test_a_torn_last_history_line_is_skipped(store: DataStore) -> None:
    store.record("import", version="v0001")
    with store.history_file.open("a") as history:
        history.write('{"ts": "2026-11-22T00:00:00Z", "event": "imp')
    assert [e["event"] for e in store.history()] == ["import"]


def test_recovery_removes_leftovers_in_staging(store: DataStore) -> None:
    (store.staging_dir / "import-v0002" / "tables").mkdir(parents=True)
    (store.staging_dir / "stray.tmp").write_text("x")
    notes = store.recover()
    assert list(store.staging_dir.iterdir()) == []
    assert len(notes) == 2


def test_recovery_discards_a_version_that_was_never_made_current(store: DataStore) -> None:
    fake_version(store, "v0001")
    store.switch_current("v0001")
    store.record("import", version="v0001")
    store.intent_file.write_text("v0002\n")  # the publish intent, then the rename, then the crash
    fake_version(store, "v0002")
    notes = store.recover()
    assert store.version_ids() == ["v0001"]
    assert store.current_vid() == "v0001"
    assert any("v0002" in note for note in notes)
    assert store.history()[-1]["event"] == "import-discarded"
    assert store.next_vid() == "v0003"
    assert not store.intent_file.exists()


def test_recovery_never_removes_a_version_the_trail_does_not_know(store: DataStore) -> None:
    fake_version(store, "v0001")
    store.switch_current("v0001")
    fake_version(store, "v0002")  # published, then rolled back from; its history line is lost
    store.history_file.write_bytes(b"garbage\n")
    notes = store.recover()
    assert store.version_ids() == ["v0001", "v0002"]
    assert [v.vid for v in store.versions()] == ["v0001", "v0002"]
    assert any("audit trail damaged at line 1" in note for note in notes)
    assert store.history_file.read_bytes() == b"garbage\n"  # reported, never acted on


def test_recovery_records_an_import_that_was_published_but_not_logged(store: DataStore) -> None:
    store.intent_file.write_text("v0001\n")
    fake_version(store, "v0001", dataset_id="d1")
    store.switch_current("v0001")  # the swap happened, then the crash, before history.jsonl
    store.recover()
    last = store.history()[-1]
    assert (last["event"], last["version"], last["recovered"], last["dataset_id"]) == (
        "import",
        "v0001",
        True,
        "d1",
    )
    assert store.recover() == []
    assert not store.intent_file.exists()


def test_recovery_keeps_versions_rolled_back_from(store: DataStore) -> None:
    for vid in ("v0001", "v0002"):
        fake_version(store, vid)
        store.switch_current(vid)
        store.record("import", version=vid)
    store.switch_current("v0001")
    store.record("rollback", version="v0001", previous="v0002")
    assert store.recover() == []
    assert store.version_ids() == ["v0001", "v0002"]


def test_only_one_writer_at_a_time(store: DataStore) -> None:
    with store.writer(), pytest.raises(StoreError, match="locked"), store.writer():
        pass
    with store.writer():
        pass


def test_an_unreadable_report_is_a_clear_error(store: DataStore) -> None:
    folder = fake_version(store, "v0001")
    (folder / "import.json").write_text("{")
    with pytest.raises(StoreError, match=r"v0001's import\.json is not a complete import report"):
        store.version("v0001")


def test_a_report_that_names_another_version_is_refused(store: DataStore) -> None:
    folder = fake_version(store, "v0002", version="v0001")
    assert folder.name == "v0002"
    with pytest.raises(StoreError, match=r"describes 'v0001', not v0002"):
        store.version("v0002")


def test_a_half_published_version_is_not_listed(store: DataStore) -> None:
    fake_version(store, "v0001")
    store.switch_current("v0001")
    store.record("import", version="v0001")
    store.intent_file.write_text("v0002\n")
    fake_version(store, "v0002")  # a crash left it in versions/ before the swap
    assert [v.vid for v in store.versions()] == ["v0001"]


def test_recovery_records_a_rollback_interrupted_before_its_history_line(store: DataStore) -> None:
    for vid in ("v0001", "v0002"):
        fake_version(store, vid)
        store.switch_current(vid)
        store.record("import", version=vid)
    store.switch_current("v0001")  # the rollback's swap, then the crash
    notes = store.recover()
    last = store.history()[-1]
    assert (last["event"], last["version"], last["previous"], last["recovered"]) == (
        "rollback",
        "v0001",
        "v0002",
        True,
    )
    assert notes and store.recover() == []


def test_recovery_tolerates_a_broken_current_pointer(store: DataStore) -> None:
    fake_version(store, "v0001")
    store.record("import", version="v0001")
    os.symlink("versions/v0099", store.current_link)
    notes = store.recover()
    assert any("not a version" in note for note in notes)
    assert store.version_ids() == ["v0001"]


def test_replay_protection_reads_the_version_folders(store: DataStore) -> None:
    fake_version(store, "v0001", pack_id="11111111-1111-4111-8111-111111111111")
    folder = fake_version(store, "v0002")
    (folder / "import.json").write_text("{damaged")
    (folder / "pack.json").write_text('{"pack_id": "22222222-2222-4222-8222-222222222222"}')
    store.history_file.write_bytes(b"\x00damaged trail\n")
    assert store.imported_pack_ids() == {
        "11111111-1111-4111-8111-111111111111": "v0001",
        "22222222-2222-4222-8222-222222222222": "v0002",
    }
