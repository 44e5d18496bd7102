"""Every import counts how it ended in the store's imports.json, whoever runs it, and counting
never changes how an import ends."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from appliance.data.import_counts import read_counts
from appliance.data.importer import import_pack
from appliance.data.store import DataStore
from appliance.errors import NodeFault, PackRejected
from tests.conftest import Signer

DiskUsage = namedtuple("DiskUsage", "total used free")


def outcomes(store: DataStore) -> dict[tuple[str, str], int]:
    """(result, reason) -> count, as the server reads them."""
    return {(o.result, o.reason): o.count for o in read_counts(store.import_counts_file)}


def test_an_import_a_refusal_and_a_fault_are_each_counted(
    tmp_path: Path, good_pack: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DataStore(tmp_path / "data")
    import_pack(store, good_pack, signer.trusted())
    assert outcomes(store) == {("imported", "none"): 1}
    with pytest.raises(PackRejected):
        import_pack(store, good_pack, signer.trusted())
    with pytest.raises(PackRejected):
        import_pack(store, good_pack, signer.trusted())
    assert outcomes(store) == {("imported", "none"): 1, ("rejected", "replay"): 2}
    monkeypatch.setattr(shutil, "disk_usage", lambda _: DiskUsage(10**9, 10**9, 0))
    with pytest.raises(NodeFault):
        import_pack(store, good_pack, signer.trusted())
    assert outcomes(store) == {
        ("fault", "disk-full"): 1,
        ("imported", "none"): 1,
        ("rejected", "replay"): 2,
    }


def test_counts_that_cannot_be_written_do_not_fail_the_import(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    store = DataStore(tmp_path / "data")
    store.ensure()
    store.import_counts_file.mkdir()  # in the way: the counts cannot replace it
    result = import_pack(store, good_pack, signer.trusted())
    assert result.vid == "v0001"
    assert store.current_vid() == "v0001"
    assert store.import_counts_file.is_dir()
    shutil.rmtree(store.import_counts_file)
    with pytest.raises(PackRejected, match="already imported"):
        import_pack(store, good_pack, signer.trusted())
    assert outcomes(store) == {("rejected", "replay"): 1}
