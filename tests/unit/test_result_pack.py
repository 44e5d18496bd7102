"""pack.json parsing and the tar member rules, without a whole pack."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.errors import PackRejected
from appliance.packs.result_pack import (
    PackManifest,
    TableEntry,
    format_timestamp,
    parse_manifest,
    parse_timestamp,
)
from appliance.packs.schema_registry import load_registry


def manifest() -> PackManifest:
    registry = load_registry()
    tables = {
        name: TableEntry(
            name, f"tables/{name}.parquet", 1, 10, "0" * 64, registry.table(name).describe()
        )
        for name in registry.tables
    }
    return PackManifest(
        pack_id="6f1c1f3e-2a5b-4c8e-9d3a-1b2c3d4e5f60",
        dataset_id="telecom-2026-11",
        model_version="ensemble-2026.11.1",
        source="ensemble",
        generated_at=datetime(2026, 11, 1, 6, tzinfo=UTC),
        created_by="mlws test",
        schema_registry_version=registry.version,
        tables=tables,
    )


def edited(change: dict[str, Any]) -> bytes:
    raw = manifest().as_json() | change
    return json.dumps(raw).encode()


def test_a_manifest_survives_its_own_round_trip() -> None:
    original = manifest()
    assert parse_manifest(original.to_bytes()) == original


def test_timestamps_are_rfc3339_utc() -> None:
    assert format_timestamp(datetime(2026, 11, 1, 6, tzinfo=UTC)) == "2026-11-01T06:00:00Z"
    assert parse_timestamp("2026-11-01T03:00:00-03:00") == datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert parse_timestamp("2026-11-01T06:00:00.25Z") == datetime(
        2026, 11, 1, 6, 0, 0, 250_000, tzinfo=UTC
    )
    for bad in ("2026-11-01", "2026-11-01T06:00:00", "yesterday", "2026-13-01T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


@pytest.mark.parametrize(
    "text",
    [
        "20261102T060000Z",  # ISO 8601 basic format
        "2026-W45-1T06:00:00Z",  # ISO 8601 week date
        "2026-306T06:00:00Z",  # ISO 8601 ordinal date
        "2026-11-02T06:00Z",  # no seconds
        "2026-11-02T06Z",
        "2026-11-02 06:00:00Z",  # space for T
        "2026-11-02t06:00:00z",
        "2026-11-02T06:00:00+0000",  # offset without its colon
        "2026-11-02T06:00:00+00",
        "2026-11-02T06:00:00.1234567Z",  # below the microsecond the tables hold
        "2026-11-02T06:00:00,5Z",
        "\uff12026-11-02T06:00:00Z",  # a full-width digit, which a \d pattern takes
        "2026-11-02T06:00:00Z\n",
        "2026-02-30T06:00:00Z",
        "2026-11-02T24:00:00Z",
    ],
)
def test_only_rfc3339_date_times_parse(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|exists"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"format": "zip"}, "bad-manifest", "format must be"),
        ({"format_version": 2}, "unsupported-format", "format_version 2 is not supported"),
        ({"format_version": True}, "bad-manifest", "format_version must be an integer"),
        ({"format_version": 1.0}, "bad-manifest", "format_version must be an integer"),
        ({"format_version": "1"}, "bad-manifest", "format_version must be an integer"),
        ({"pack_id": 0x6F1C1F3E2A5B4C8E9D3A1B2C3D4E5F60}, "bad-manifest", "pack_id must be a UUID"),
        ({"pack_id": "not-a-uuid"}, "bad-manifest", "pack_id must be a UUID"),
        ({"dataset_id": ""}, "bad-manifest", "dataset_id must be"),
        ({"model_version": "x\n'; DROP"}, "bad-manifest", "model_version must be"),
        ({"source": 7}, "bad-manifest", "source must be"),
        ({"generated_at": "2026-11-01 06:00"}, "bad-manifest", "generated_at"),
        ({"schema_registry_version": 99}, "schema", "schema_registry_version 99"),
        ({"schema_registry_version": True}, "schema", "schema_registry_version True"),
        ({"schema_registry_version": 1.0}, "schema", "schema_registry_version 1.0"),
        ({"generated_at": "20261101T060000Z"}, "bad-manifest", "generated_at: not an RFC 3339"),
        ({"generated_at": "2026-W44-7T06:00:00Z"}, "bad-manifest", "generated_at: not an RFC"),
        ({"generated_at": 1_793_512_800}, "bad-manifest", "generated_at: not an RFC 3339"),
        ({"tables": {}}, "bad-manifest", "tables must be an object"),
        ({"tables": []}, "bad-manifest", "tables must be an object"),
        ({"created_by": "x" * 300}, "bad-manifest", "created_by"),
        ({"surprise": True}, "bad-manifest", "unknown surprise"),
    ],
)
def test_manifest_faults_are_refused_with_their_reason(
    change: dict[str, Any], reason: str, words: str
) -> None:
    with pytest.raises(PackRejected, match=words) as refused:
        parse_manifest(edited(change))
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("entry_change", "words"),
    [
        ({"path": "../fact_forecast.parquet"}, "path must be tables/fact_forecast.parquet"),
        ({"sha256": "ABC"}, "sha256 must be 64 lowercase hex digits"),
        ({"rows": -1}, "rows must be a whole number"),
        ({"rows": 1.0}, "rows must be a whole number"),
        ({"rows": False}, "rows must be a whole number"),
        ({"bytes": True}, "bytes must be a whole number"),
        ({"bytes": 10.0}, "bytes must be a whole number"),
        (
            {"schema": [{"name": "item_id", "type": "string", "nullable": False}]},
            "schema differs from the schema registry",
        ),
        ({"extra": 1}, "entry must have exactly"),
    ],
)
def test_table_entry_faults_are_refused(entry_change: dict[str, Any], words: str) -> None:
    raw = manifest().as_json()
    raw["tables"]["fact_forecast"] |= entry_change
    with pytest.raises(PackRejected, match=words):
        parse_manifest(json.dumps(raw).encode())


def test_an_unknown_table_is_refused() -> None:
    raw = manifest().as_json()
    raw["tables"]["fact_weather"] = raw["tables"]["dim_item"]
    with pytest.raises(PackRejected, match="fact_weather is not in the schema registry"):
        parse_manifest(json.dumps(raw).encode())


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe", b"[]", b"null", b"{" * 100_000, b"[" * 100_000, b"9" * 5_000],
)
def test_garbage_manifests_are_refused_not_crashed_on(data: bytes) -> None:
    with pytest.raises(PackRejected):
        parse_manifest(data)


def test_a_key_twice_is_refused_at_any_depth() -> None:
    good = manifest().to_bytes()
    top = good.replace(b'"dataset_id":', b'"dataset_id": "../../etc", "dataset_id":', 1)
    entry = good.replace(b'"rows": 1,', b'"rows": 0, "rows": 1,', 1)
    column = good.replace(b'"name": "item_id",', b'"name": "x", "name": "item_id",', 1)
    for data, key in ((top, "dataset_id"), (entry, "rows"), (column, "name")):
        assert data != good
        with pytest.raises(PackRejected, match=f"key '{key}' appears twice") as refused:
            parse_manifest(data)
        assert refused.value.reason == "bad-manifest"


def test_member_name_rules() -> None:
    from appliance.packs.result_pack import _check_member_name

    for good in ("pack.json", "tables/fact_forecast.parquet"):
        _check_member_name(good)
    for bad in (
        "/etc/passwd",
        "tables/../../x",
        "./pack.json",
        "tables//x",
        "a\\b",
        "C:x",
        "tables/",
    ):
        with pytest.raises(PackRejected):
            _check_member_name(bad)


def test_member_types_other_than_files_are_refused() -> None:
    from appliance.packs.result_pack import _check_member

    seen: set[str] = set()
    directory = tarfile.TarInfo("tables")
    directory.type = tarfile.DIRTYPE
    assert _check_member(directory, seen) is False
    other_dir = tarfile.TarInfo("elsewhere")
    other_dir.type = tarfile.DIRTYPE
    with pytest.raises(PackRejected, match="is a directory"):
        _check_member(other_dir, seen)
