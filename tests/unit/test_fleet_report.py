"""ansible/library/fleet_report.py: the fleet table and who differs from the majority; and the
facts the fleet playbooks share with the code they drive."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from appliance.bundles import bundle_layout
from appliance.data import importer
from tests.unit.test_installer_facts import ANSIBLE, yaml_file


def load_module() -> ModuleType:
    path = ANSIBLE / "library" / "fleet_report.py"
    spec = importlib.util.spec_from_file_location("fleet_report", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet_report = load_module()
DATA = {
    "version": "v0001",
    "dataset_id": "d",
    "model_version": "m1",
    "generated_at": "2026-11-01T06:00:00Z",
}


def node(
    software: str = "1.1.0", data: dict[str, str] | None = DATA, health: str = "ready"
) -> dict[str, object]:
    return {"software": software, "engine": "podman", "data": data, "health": health,
            "last_import": "2026-11-02T00:00:00Z", "error": ""}  # fmt: skip


def test_nodes_alike_differ_in_nothing() -> None:
    result = fleet_report.report({"a": node(), "b": node(), "c": node()})
    assert result["differing"] == []
    assert fleet_report.table(result)[-1] == "all 3 node(s) alike"


def test_the_odd_node_is_named_with_the_fields_it_differs_in() -> None:
    older = dict(DATA, model_version="m0", version="v0002")
    result = fleet_report.report({"a": node(), "b": node("1.0.0", older), "c": node()})
    assert result["differing"] == ["b"]
    rows = {r["node"]: r for r in result["nodes"]}
    assert rows["b"]["differs"] == ["software", "data"]
    lines = fleet_report.table(result)
    assert any(line.startswith("! b ") for line in lines)
    assert lines[-1] == "! b differs from most nodes in software, data"


def test_the_same_data_under_another_version_id_is_the_same_data() -> None:
    renumbered = dict(DATA, version="v0007")  # imported after other packs: the same data
    result = fleet_report.report({"a": node(), "b": node(data=renumbered), "c": node()})
    assert result["differing"] == []


def test_a_tie_has_no_majority_and_every_node_differs() -> None:
    result = fleet_report.report({"a": node("1.0.0"), "b": node("1.1.0")})
    assert result["majority"]["software"] is None
    assert result["differing"] == ["a", "b"]


def test_an_unreachable_node_differs_and_says_why() -> None:
    down = {"health": "unreachable", "error": "could not be reached over SSH"}
    result = fleet_report.report({"a": node(), "b": node(), "c": down})
    assert result["differing"] == ["c"]
    assert fleet_report.table(result)[-1].endswith(": could not be reached over SSH")


def test_the_json_report_is_written_whole(tmp_path: Path) -> None:
    result = fleet_report.report({"a": node()})
    fleet_report.write_json(str(tmp_path / "status.json"), result)
    assert (
        json.loads((tmp_path / "status.json").read_text())["format"] == "appliance-fleet-status/1"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_the_fleet_playbooks_read_versions_and_replays_as_the_code_writes_them() -> None:
    shared = yaml_file(ANSIBLE / "group_vars" / "all.yml")
    assert shared["appliance_fleet_version_pattern"] == bundle_layout.VERSION_PATTERN.pattern
    source = Path(importer.__file__).read_text(encoding="utf-8")
    assert re.search(
        r'f"pack \{manifest.pack_id\} ' + re.escape(shared["appliance_fleet_replay"]), source
    )
