"""`mlws pack` on the tables ML pipelines write, as the ML team runs it, and the node importing it.

The demo tables written as pandas writes them (nanosecond timestamps, dates as midnight
timestamps, every column nullable) pack with no manual step, and the node's real importer
(`appliance import`) takes the pack. Tables that do not conform get every problem listed.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests import ml_tables
from tests.conftest import Signer, import_into, run, versions_json

REFUSED = 3
USAGE = 2


def test_pandas_written_tables_pack_and_import_on_the_node(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_pandas(demo_tables, tmp_path / "pandas out")
    pack = tmp_path / "forecasts.pack"
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", pack)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{pack}\n"
    assert (
        "converted dim_item.generated_at: TIMESTAMPTZ_NS (Parquet INT64) -> timestamp "
        "(nanoseconds to microseconds)" in done.stderr.splitlines()
    )
    assert (
        "converted fact_forecast.date: TIMESTAMP_NS (Parquet INT64) -> date "
        "(timestamps at midnight to dates)" in done.stderr.splitlines()
    )
    data = tmp_path / "data"
    imported = import_into(data, pack, signer, check=False)
    assert imported.returncode == 0, imported.stderr
    (version,) = json.loads(versions_json(data))["versions"]
    assert version["dataset_id"] == "demo-telecom-spares"
    assert version["generated_at"] == "2026-11-01T06:00:00Z"


def test_a_duckdb_database_packs_and_imports(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    database = ml_tables.write_duckdb_database(demo_tables, tmp_path / "ml.duckdb")
    pack = tmp_path / "db.pack"
    done = run("mlws", "pack", database, "--key", signer.key, "--out", pack, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["pack"] == str(pack)
    assert {c["column"] for c in result["conversions"]} == {"generated_at"}
    import_into(tmp_path / "data", pack, signer)
    assert (
        json.loads(versions_json(tmp_path / "data"))["versions"][0]["pack_id"] == result["pack_id"]
    )


def spoiled_tables(demo_tables: Path, folder: Path) -> Path:
    """pandas-written tables with three problems in two tables."""
    import pandas as pd  # type: ignore[import-untyped]  # no stubs; a dev dependency only

    folder.mkdir()
    for name in ml_tables.TABLES:
        frame = ml_tables.as_pandas_writes(demo_tables, name)
        if name == "dim_item":
            frame.loc[frame.index[[1, 4]], "name"] = None
            frame.loc[frame.index[0], "lead_time_days"] = 3_000_000_000
        if name == "fact_forecast":
            frame.loc[frame.index[2], "date"] += pd.Timedelta(hours=6)
        frame.to_parquet(folder / f"{name}.parquet")
    return folder


def test_every_problem_is_listed_then_one_error_line(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = spoiled_tables(demo_tables, tmp_path / "spoiled")
    out = tmp_path / "x.pack"
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", out)
    assert done.returncode == REFUSED
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    listed = lines[lines.index("3 problem(s):") + 1 : -1]
    assert [line.split(":")[0].strip() for line in listed] == [
        "dim_item.name",
        "dim_item.lead_time_days",
        "fact_forecast.date",
    ]
    assert "2 row(s) with null name" in listed[0]
    assert "e.g. row 1, row 4" in listed[0]
    assert "3000000000" in listed[1]
    assert lines[-1].startswith("error: dim_item.name: 2 row(s) with null name")
    assert lines[-1].endswith("(and 2 more problem(s))")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spoiled"]


def test_json_report_for_pipelines(tmp_path: Path, demo_tables: Path, signer: Signer) -> None:
    tables = spoiled_tables(demo_tables, tmp_path / "spoiled")
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", tmp_path / "x.pack", "--json")
    assert done.returncode == REFUSED
    report = json.loads(done.stdout)
    assert report["ok"] is False
    problems = report["problems"]
    assert [(p["table"], p["column"], p["rows"]) for p in problems] == [
        ("dim_item", "name", 2),
        ("dim_item", "lead_time_days", 1),
        ("fact_forecast", "date", 1),
    ]
    assert problems[1]["examples"] == [{"row": 0, "value": "3000000000"}]
    assert problems[1]["found"] == "BIGINT (Parquet INT64)"
    assert problems[1]["registry"] == "int32 (INTEGER), not null"
    assert any(c["column"] == "generated_at" for c in report["conversions"])
    assert done.stderr.splitlines()[-1].startswith("error: ")


def test_a_file_that_is_neither_folder_nor_database(tmp_path: Path, signer: Signer) -> None:
    fake = tmp_path / "tables.duckdb"
    fake.write_text("id,name\n1,x\n")
    done = run("mlws", "pack", fake, "--key", signer.key, "--out", tmp_path / "x.pack")
    assert done.returncode == USAGE
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {fake} is a file, but not a DuckDB database")


def test_conform_writes_the_tables_a_pack_holds(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    from tests.packs import ForgedPack

    tables = ml_tables.write_polars(demo_tables, tmp_path / "polars")
    conformed = tmp_path / "conformed"
    done = run("mlws", "conform", tables, conformed)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{conformed}\n"
    assert "converted fact_forecast.date:" in done.stderr
    direct, via = tmp_path / "direct.pack", tmp_path / "via.pack"
    run("mlws", "pack", tables, "--key", signer.key, "--out", direct, check=True)
    packed = run("mlws", "pack", conformed, "--key", signer.key, "--out", via, check=True)
    assert "converted" not in packed.stderr  # the conformed files go in byte for byte
    ours, theirs = ForgedPack.read(via), ForgedPack.read(direct)
    assert ours.tables == theirs.tables
    for member, data in ours.tables.items():
        assert (conformed / Path(member).name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "conformed",
        "direct.pack",
        "polars",
        "via.pack",
    ]


def test_conform_refuses_and_leaves_nothing(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = spoiled_tables(demo_tables, tmp_path / "spoiled")
    done = run("mlws", "conform", tables, tmp_path / "out", "--json")
    assert done.returncode == REFUSED
    assert len(json.loads(done.stdout)["problems"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spoiled"]
    (tmp_path / "taken").mkdir()
    done = run("mlws", "conform", demo_tables, tmp_path / "taken")
    assert done.returncode == USAGE
    assert done.stderr.splitlines()[-1] == (
        f"error: {tmp_path / 'taken'} already exists: give a new folder for the conformed tables"
    )


def test_json_for_an_unreadable_table(tmp_path: Path, demo_tables: Path, signer: Signer) -> None:
    tables = ml_tables.write_pandas(demo_tables, tmp_path / "in")
    (tables / "dim_item.parquet").write_bytes(b"PAR1 truncated")
    done = run("mlws", "pack", tables, "--key", signer.key, "--out", tmp_path / "x.pack", "--json")
    assert done.returncode == REFUSED
    report = json.loads(done.stdout)
    assert (report["ok"], report["exit_code"], report["problems"]) == (False, REFUSED, [])
    assert "dim_item.parquet: not a readable Parquet file" in report["error"]
    assert done.stderr.splitlines()[-1] == f"error: {report['error']}"
