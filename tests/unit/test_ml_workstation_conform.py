"""Conforming the tables ML pipelines write (ml_workstation/conform.py, inputs.py, api.py).

Real writers (pandas with pyarrow and fastparquet, polars, DuckDB, CSV): every lossless
conversion gives the very pack the already-conforming demo tables give, byte for byte; every
lossy case is refused with its reason, rows and examples; several problems are all reported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ConfigError, SchemaError
from ml_workstation import TablesDoNotConform, write_pack
from ml_workstation.pack_builder import PackRequest, build_pack
from tests import ml_tables
from tests.conftest import Signer
from tests.packs import ForgedPack

PACK_ID = "6b1c8f0e-1d2a-4c3b-9e4f-5a6b7c8d9e0f"


def pack_bytes(tables: Path | dict[str, Any], signer: Signer, out: Path, **flags: Any) -> bytes:
    """The bytes of the pack made from `tables`, with a fixed pack_id so packs compare."""
    build_pack(PackRequest(tables, pack_id=PACK_ID, **flags), signer.key, out)
    return out.read_bytes()


@pytest.fixture(scope="module")
def reference_pack(
    tmp_path_factory: pytest.TempPathFactory, demo_tables: Path, signer: Signer
) -> Path:
    """The pack of the demo tables, which already conform: they go in byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "ref.pack"
    pack_bytes(demo_tables, signer, out)
    return out


@pytest.fixture(scope="module")
def reference(reference_pack: Path) -> bytes:
    """The bytes of the reference pack."""
    return reference_pack.read_bytes()


def conversions_of(tables: Path | dict[str, Any], signer: Signer, out: Path) -> set[str]:
    built = build_pack(PackRequest(tables, pack_id=PACK_ID), signer.key, out)
    return {c.line() for c in built.conversions}


WRITERS: dict[str, Callable[[Path, Path], Path]] = {
    "pandas_pyarrow": lambda demo, out: ml_tables.write_pandas(demo, out, "pyarrow"),
    "pandas_fastparquet": lambda demo, out: ml_tables.write_pandas(demo, out, "fastparquet"),
    "polars": ml_tables.write_polars,
    "duckdb_parquet": ml_tables.write_duckdb_parquet,
    "csv_with_header": ml_tables.write_csv,
    "duckdb_database": lambda demo, out: ml_tables.write_duckdb_database(demo, out / "ml.duckdb"),
}


@pytest.mark.filterwarnings("ignore:The 'fastparquet' engine is deprecated")
@pytest.mark.parametrize("writer", list(WRITERS))
def test_tables_as_pipelines_write_them_give_the_same_pack(
    tmp_path: Path, demo_tables: Path, signer: Signer, reference: bytes, writer: str
) -> None:
    (tmp_path / "in").mkdir()
    tables = WRITERS[writer](demo_tables, tmp_path / "in")
    assert pack_bytes(tables, signer, tmp_path / "x.pack") == reference


def test_the_issue_tables_convert_column_by_column(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_pandas(demo_tables, tmp_path / "pandas")
    lines = conversions_of(tables, signer, tmp_path / "x.pack")
    assert {
        "dim_item.generated_at: TIMESTAMPTZ_NS (Parquet INT64) -> timestamp (nanoseconds to microseconds)",
        "dim_item.lead_time_days: BIGINT (Parquet INT64) -> int32 (integers to int32)",
        "fact_forecast.date: TIMESTAMP_NS (Parquet INT64) -> date (timestamps at midnight to dates)",
        "fact_inventory.date: TIMESTAMP_NS (Parquet INT64) -> date (timestamps at midnight to dates)",
        "fact_metrics: columns in another order -> registry order (reordered)",
        "fact_forecast.__index_level_0__: BIGINT -> (left out) (pandas index column)",
    } <= lines


@pytest.mark.parametrize("library", ["pyarrow", "pandas", "polars"])
def test_write_pack_takes_tables_in_memory(
    tmp_path: Path, demo_tables: Path, signer: Signer, reference_pack: Path, library: str
) -> None:
    import pyarrow.parquet as pq

    if library == "pyarrow":
        given = {n: pq.read_table(demo_tables / f"{n}.parquet") for n in ml_tables.TABLES}
    elif library == "pandas":
        given = {n: ml_tables.as_pandas_writes(demo_tables, n) for n in ml_tables.TABLES}
    else:
        given = {n: ml_tables.as_polars_writes(demo_tables, n) for n in ml_tables.TABLES}
    out = tmp_path / "api.pack"
    built = write_pack(given, key=signer.key, out=out)
    assert built.path == out
    assert built.manifest.dataset_id == "demo-telecom-spares"
    ours, theirs = ForgedPack.read(out), ForgedPack.read(reference_pack)
    assert built.pack_id == ours.manifest["pack_id"] != theirs.manifest["pack_id"]
    # The same rows give the same table files as the demo's (the pack_id is fresh each time).
    assert ours.tables == theirs.tables
    assert ours.manifest["tables"] == theirs.manifest["tables"]


def test_metadata_columns_missing_are_filled_from_the_flags(
    tmp_path: Path, demo_tables: Path, signer: Signer, reference: bytes
) -> None:
    import duckdb

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ml_tables.TABLES:
        duckdb.sql(
            f"COPY (SELECT * EXCLUDE (generated_at, source) FROM "
            f"read_parquet('{demo_tables / name}.parquet')) TO '{bare / name}.parquet' (FORMAT parquet)"
        )
    flags = {"source": "ensemble", "generated_at": datetime(2026, 11, 1, 6, 0, tzinfo=UTC)}
    assert pack_bytes(bare, signer, tmp_path / "x.pack", **flags) == reference


# --- lossy cases: refused, with their reason, rows and examples ---------------------------------


def pandas_tables(demo_tables: Path) -> dict[str, Any]:
    return {n: ml_tables.as_pandas_writes(demo_tables, n) for n in ml_tables.TABLES}


def time_of_day_in_a_date(t: dict[str, Any]) -> None:
    import pandas as pd  # type: ignore[import-untyped]  # no stubs; a dev dependency only

    t["fact_forecast"].loc[t["fact_forecast"].index[2], "date"] += pd.Timedelta(hours=6)


def null_in_a_key(t: dict[str, Any]) -> None:
    t["dim_item"].loc[t["dim_item"].index[4], "item_id"] = None


def sub_microsecond_timestamp(t: dict[str, Any]) -> None:
    import pandas as pd

    t["dim_item"].loc[t["dim_item"].index[1], "generated_at"] += pd.Timedelta(nanoseconds=1)


def integer_out_of_range(t: dict[str, Any]) -> None:
    t["dim_item"].loc[t["dim_item"].index[0], "lead_time_days"] = 3_000_000_000


def fraction_in_an_integer(t: dict[str, Any]) -> None:
    t["dim_item"]["lead_time_days"] = t["dim_item"]["lead_time_days"].astype("float64")
    t["dim_item"].loc[t["dim_item"].index[3], "lead_time_days"] = 2.5


def timestamp_without_time_zone(t: dict[str, Any]) -> None:
    t["fact_metrics"]["generated_at"] = t["fact_metrics"]["generated_at"].dt.tz_localize(None)


def number_as_text(t: dict[str, Any]) -> None:
    t["fact_inventory"]["on_hand"] = t["fact_inventory"]["on_hand"].astype(str)


LOSSY = [
    (time_of_day_in_a_date, "fact_forecast", "date", "1 row(s) with a time of day", 2),
    (null_in_a_key, "dim_item", "item_id", "1 row(s) with null item_id", 4),
    (sub_microsecond_timestamp, "dim_item", "generated_at", "1 row(s) with sub-microsecond digits", 1),
    (integer_out_of_range, "dim_item", "lead_time_days", "1 row(s) out of the int32 range", 0),
    (fraction_in_an_integer, "dim_item", "lead_time_days", "1 row(s) not a whole number", 3),
    (timestamp_without_time_zone, "fact_metrics", "generated_at", "has no time zone", None),
    (number_as_text, "fact_inventory", "on_hand", "type is string, registry says double", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spoil", "table", "column", "reason", "row"), LOSSY, ids=[case[0].__name__ for case in LOSSY]
)
def test_a_lossy_conversion_is_refused_with_its_reason(
    tmp_path: Path,
    demo_tables: Path,
    signer: Signer,
    spoil: Callable[[dict[str, Any]], None],
    table: str,
    column: str,
    reason: str,
    row: int | None,
) -> None:
    given = pandas_tables(demo_tables)
    spoil(given)
    out = tmp_path / "x.pack"
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(given, key=signer.key, out=out)
    problems = [p for p in refused.value.problems if (p.table, p.column) == (table, column)]
    assert len(problems) == 1, [p.line() for p in refused.value.problems]
    (problem,) = problems
    assert reason in problem.message
    if row is not None:
        # Rows count from 0 in the order the pipeline holds them (pandas' iloc).
        assert [e.row for e in problem.examples] == [row]
        assert problem.rows == 1
    # A column refused is not also said to be converted (a date with a time is no midnight).
    assert (table, column) not in {(c.table, c.column) for c in refused.value.conversions}
    assert refused.value.exit_code == 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_every_problem_of_every_table_is_reported_at_once(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    given = pandas_tables(demo_tables)
    for spoil in (time_of_day_in_a_date, null_in_a_key, integer_out_of_range, number_as_text):
        spoil(given)
    forecast = given["fact_forecast"]
    forecast.loc[forecast.index[5:9], "yhat_lower"] = forecast["yhat"].iloc[5:9] + 1
    given["fact_metrics"] = given["fact_metrics"].rename(columns={"period": "window"})
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(given, key=signer.key, out=tmp_path / "x.pack")
    found = {(p.table, p.column, p.message.split(" (")[0]) for p in refused.value.problems}
    assert {
        ("fact_forecast", "date", "1 row(s) with a time of day"),
        ("dim_item", "item_id", "1 row(s) with null item_id"),
        ("dim_item", "lead_time_days", "1 row(s) out of the int32 range"),
        ("fact_forecast", None, "4 row(s) breaking 'interval contains the forecast'"),
        ("fact_metrics", "period", "missing column"),
        ("fact_inventory", "on_hand", "type is string, registry says double"),
    } <= found
    assert any(
        p.column == "window" and "unexpected column" in p.message for p in refused.value.problems
    )
    interval = next(p for p in refused.value.problems if "interval" in p.message)
    assert [e.row for e in interval.examples] == [5, 6, 7, 8]
    assert interval.examples[0].value is not None
    assert "yhat_lower=" in interval.examples[0].value
    assert str(refused.value).endswith(f"(and {len(refused.value.problems) - 1} more problem(s))")


def test_a_problem_reads_as_one_line_and_as_json(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    given = pandas_tables(demo_tables)
    time_of_day_in_a_date(given)
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(given, key=signer.key, out=tmp_path / "x.pack")
    (problem,) = refused.value.problems
    shown = str(given["fact_forecast"]["date"].iloc[2])
    assert shown.endswith(" 06:00:00")
    assert problem.line() == (
        "fact_forecast.date: 1 row(s) with a time of day (found TIMESTAMP_NS, registry says "
        f"date (DATE), not null); e.g. row 2 = '{shown}'"
    )
    assert problem.as_dict() == {
        "table": "fact_forecast",
        "column": "date",
        "problem": "1 row(s) with a time of day",
        "found": "TIMESTAMP_NS",
        "registry": "date (DATE), not null",
        "rows": 1,
        "examples": [{"row": 2, "value": shown}],
    }


# --- hostile and broken inputs: one clear error, nothing written --------------------------------


def test_a_truncated_parquet_file_is_named(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_pandas(demo_tables, tmp_path / "in")
    whole = (tables / "fact_forecast.parquet").read_bytes()
    (tables / "fact_forecast.parquet").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SchemaError, match=r"fact_forecast.parquet: not a readable Parquet file"):
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    assert not (tmp_path / "x.pack").exists()


def test_a_csv_with_a_wrong_header_reports_its_columns(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    path = tables / "dim_item.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("lead_time_days", "lead_days"), *lines[1:]]) + "\n")
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    problems = {(p.column, p.message.split(";")[0]) for p in refused.value.problems}
    assert ("lead_time_days", "missing column") in problems
    assert any(c == "lead_days" and m.startswith("unexpected column") for c, m in problems)


def test_a_csv_without_a_header_is_refused(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    path = tables / "fact_metrics.csv"
    path.write_text("\n".join(path.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    assert {p.message for p in refused.value.problems if p.column == "scope"} == {"missing column"}


def test_a_bad_value_in_a_csv_is_named_by_its_row(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    path = tables / "fact_inventory.csv"
    header, *rows = path.read_text().splitlines()
    columns = header.split(",")
    fields = rows[7].split(",")
    fields[columns.index("date")] = "2026-13-45"
    rows[7] = ",".join(fields)
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    (problem,) = refused.value.problems
    assert (problem.column, problem.message) == ("date", "1 row(s) not a day (YYYY-MM-DD)")
    assert [(e.row, e.value) for e in problem.examples] == [(7, "2026-13-45")]


def test_a_file_that_is_not_a_duckdb_database(tmp_path: Path, signer: Signer) -> None:
    fake = tmp_path / "tables.duckdb"
    fake.write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(ConfigError, match="is a file, but not a DuckDB database"):
        write_pack(fake, key=signer.key, out=tmp_path / "x.pack")


def test_a_damaged_duckdb_database_is_named(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    database = ml_tables.write_duckdb_database(demo_tables, tmp_path / "ml.duckdb")
    data = database.read_bytes()
    database.write_bytes(data[:4096])
    with pytest.raises(SchemaError, match=r"ml.duckdb: not a readable DuckDB database"):
        write_pack(database, key=signer.key, out=tmp_path / "x.pack")
    assert not (tmp_path / "x.pack").exists()


def test_an_empty_folder(tmp_path: Path, signer: Signer) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="no table files"):
        write_pack(tmp_path / "empty", key=signer.key, out=tmp_path / "x.pack")


def test_a_table_given_twice(tmp_path: Path, demo_tables: Path, signer: Signer) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    ml_tables.write_pandas(demo_tables, tables)
    with pytest.raises(SchemaError, match="dim_item is given twice"):
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")


def test_paths_with_spaces_and_unicode(
    tmp_path: Path, demo_tables: Path, signer: Signer, reference: bytes
) -> None:
    folder = tmp_path / "prévisions d'été 2026"
    tables = ml_tables.write_pandas(demo_tables, folder / "tables ü")
    assert pack_bytes(tables, signer, folder / "pack é.pack") == reference


def test_write_pack_refuses_what_is_not_a_table(tmp_path: Path, signer: Signer) -> None:
    with pytest.raises(ConfigError, match=r"dim_item: a builtins.dict is not a table"):
        write_pack({"dim_item": {"item_id": ["a"]}}, key=signer.key, out=tmp_path / "x.pack")


def test_write_pack_says_how_to_install_a_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ml_workstation import api

    # A mock of a workstation without pyarrow: None in sys.modules makes its import fail.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"pyarrow is needed .*appliance\[workstation\]"):
        api._library("pyarrow")


def test_an_empty_csv_and_a_header_only_csv(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    header = (tables / "fact_metrics.csv").read_text().splitlines()[0]
    (tables / "fact_metrics.csv").write_text(header + "\n")
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    assert [p.line() for p in refused.value.problems] == [
        "fact_metrics: 0 row(s), the registry needs at least 1"
    ]
    (tables / "fact_metrics.csv").write_bytes(b"")
    with pytest.raises(SchemaError, match=r"fact_metrics.csv: not a readable CSV table"):
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    assert not (tmp_path / "x.pack").exists()


def test_a_binary_file_named_csv(tmp_path: Path, demo_tables: Path, signer: Signer) -> None:
    tables = ml_tables.write_csv(demo_tables, tmp_path / "in")
    (tables / "dim_item.csv").write_bytes((demo_tables / "dim_item.parquet").read_bytes())
    with pytest.raises(SchemaError) as refused:
        write_pack(tables, key=signer.key, out=tmp_path / "x.pack")
    assert "dim_item" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "x.pack").exists()


def test_long_values_and_odd_column_names_stay_on_one_line(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    given = pandas_tables(demo_tables)
    items = given["dim_item"]
    items.loc[items.index[0], "name"] = "x" * 5000
    given["dim_item"] = items.assign(**{"note\nfrom the pipeline": 1})
    with pytest.raises(TablesDoNotConform) as refused:
        write_pack(given, key=signer.key, out=tmp_path / "x.pack")
    lines = {p.column: p.line() for p in refused.value.problems}
    assert lines["name"].endswith(f"e.g. row 0 = '{'x' * 80}...'")
    assert lines["note\nfrom the pipeline"].startswith(
        "dim_item.'note\\nfrom the pipeline': unexpected column"
    )
    assert all("\n" not in line for line in lines.values())


def test_32_bit_floats_widen_to_the_registry_s_doubles_exactly(
    tmp_path: Path, demo_tables: Path, signer: Signer
) -> None:
    """float32 as a pipeline may keep it: each value widens to the same number as a double."""
    as_doubles = {n: ml_tables.as_pandas_writes(demo_tables, n) for n in ml_tables.TABLES}
    inventory = as_doubles["fact_inventory"]
    inventory["on_hand"] = inventory["on_hand"].round(0)  # whole numbers: exact in 32 bits too
    as_floats = dict(as_doubles, fact_inventory=inventory.astype({"on_hand": "float32"}))
    built = build_pack(PackRequest(as_floats, pack_id=PACK_ID), signer.key, tmp_path / "f.pack")
    assert any(
        c.column == "on_hand" and "32-bit floats to 64-bit" in c.line() for c in built.conversions
    ), [c.line() for c in built.conversions]
    doubles = pack_bytes(as_doubles, signer, tmp_path / "d.pack")
    assert (tmp_path / "f.pack").read_bytes() == doubles
