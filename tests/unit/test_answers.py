"""build_answers: partitions that change nothing in answers.bin, and the series kind."""

from __future__ import annotations

import zlib
from pathlib import Path

import duckdb
import pytest

from appliance.data.answers import (
    INDEX_TABLE,
    INVENTORY,
    KINDS,
    TIMESERIES,
    build_answers,
    decompress,
    plan_answers,
)
from appliance.data.series import SERIES, encode_series, record_size, slice_series
from appliance.data.store_layout import VERSION_ANSWERS
from appliance.faults import node_fault
from appliance.packs.schema_registry import load_registry
from appliance.packs.table_checks import literal, quote
from appliance.progress import quiet

METADATA = {
    "version": "v0001",
    "dataset_id": "demo-telecom-spares",
    "model_version": "demo-ensemble-1.0",
    "source": "ensemble",
    "generated_at": "2026-11-01T06:00:00Z",
}
ONE_PARTITION = 10**12


def load_tables(con: duckdb.DuckDBPyConnection, tables: Path) -> None:
    """Load the demo tables sorted by their registry sort keys, as the import does."""
    registry = load_registry()
    for name in registry.tables:
        order = ", ".join(quote(c) for c in registry.table(name).sort_key)
        source = literal(str(tables / f"{name}.parquet"))
        con.execute(f"CREATE TABLE {quote(name)} AS FROM read_parquet({source}) ORDER BY {order}")


def built(
    tables: Path, folder: Path, partition_rows: int
) -> tuple[bytes, list[tuple[object, ...]]]:
    """answers.bin and the index rows of a build of `tables` with partitions of `partition_rows`."""
    folder.mkdir(parents=True)
    con = duckdb.connect()
    try:
        load_tables(con, tables)
        build_answers(con, folder, METADATA, quiet, partition_rows)
        index = con.execute(f"SELECT * FROM {INDEX_TABLE} ORDER BY offset_bytes").fetchall()
    finally:
        con.close()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no spool left
    return (folder / VERSION_ANSWERS).read_bytes(), index


@pytest.fixture(scope="module")
def demo_db(demo_tables: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the demo tables in data.duckdb and their answers, built in one partition."""
    folder = tmp_path_factory.mktemp("answers") / "v0001"
    folder.mkdir()
    con = duckdb.connect(str(folder / "data.duckdb"))
    try:
        load_tables(con, demo_tables)
        build_answers(con, folder, METADATA, quiet, ONE_PARTITION)
    finally:
        con.close()
    return folder


def records(folder: Path, kind: str) -> dict[str, bytes]:
    """item_id -> stored bytes of every answer of `kind`, each checked against its CRC-32."""
    blob = (folder / VERSION_ANSWERS).read_bytes()
    con = duckdb.connect(str(folder / "data.duckdb"), read_only=True)
    try:
        sql = f"SELECT item_id, offset_bytes, length_bytes, crc32 FROM {INDEX_TABLE} WHERE kind = ?"
        rows = con.execute(sql, [kind]).fetchall()
    finally:
        con.close()
    found = {}
    for item_id, offset, length, crc in rows:
        data = blob[offset : offset + length]
        assert zlib.crc32(data) == crc, (kind, item_id)
        found[item_id] = data
    return found


def test_timeseries_stays_first_and_series_is_a_kind() -> None:
    assert KINDS == (TIMESERIES, INVENTORY, SERIES)


@pytest.mark.parametrize("partition_rows", [1, 37, 500])
def test_partitions_give_the_same_answers_bin_and_index_as_one_partition(
    demo_tables: Path, tmp_path: Path, partition_rows: int
) -> None:
    whole = built(demo_tables, tmp_path / "whole" / "v0001", ONE_PARTITION)
    parted = built(demo_tables, tmp_path / "parted" / "v0001", partition_rows)
    assert parted[0] == whole[0]
    assert parted[1] == whole[1]


def test_partitions_cover_every_item_once_in_order_within_the_row_budget(
    demo_tables: Path,
) -> None:
    con = duckdb.connect()
    try:
        load_tables(con, demo_tables)
        rows = dict(
            con.execute(
                "SELECT item_id, count(*) FROM (SELECT item_id FROM fact_forecast "
                "UNION ALL SELECT item_id FROM fact_inventory) GROUP BY item_id"
            ).fetchall()
        )
        forecast = con.execute("SELECT item_id, count(*) FROM fact_forecast GROUP BY ALL")
        series_bytes = sum(record_size(days) for _item, days in forecast.fetchall())
        for budget in (1, 37, 100, 500, ONE_PARTITION):
            plan = plan_answers(con, budget)
            assert plan.series_bytes == series_bytes
            covered: list[str] = []
            for first, last in plan.ranges:
                inside = sorted(i for i in rows if first <= i <= last)
                assert inside[0] == first and inside[-1] == last
                assert len(inside) == 1 or sum(rows[i] for i in inside) <= budget
                covered += inside
            assert covered == sorted(rows)
        assert len(plan_answers(con, ONE_PARTITION).ranges) == 1
        assert len(plan_answers(con, 1).ranges) == len(rows)
    finally:
        con.close()


def test_answers_bin_holds_the_series_then_the_timeseries_then_the_inventory(
    demo_db: Path,
) -> None:
    size = (demo_db / VERSION_ANSWERS).stat().st_size
    con = duckdb.connect(str(demo_db / "data.duckdb"), read_only=True)
    try:
        start = 0
        for kind in (SERIES, TIMESERIES, INVENTORY):
            sql = (
                f"SELECT item_id, offset_bytes, length_bytes FROM {INDEX_TABLE} "
                "WHERE kind = ? ORDER BY item_id"
            )
            for _item_id, offset, length in con.execute(sql, [kind]).fetchall():
                assert offset == start, kind  # contiguous, in item_id order
                start += length
    finally:
        con.close()
    assert start == size


def test_every_answer_of_every_kind_is_indexed_and_matches_its_crc(demo_db: Path) -> None:
    items = records(demo_db, TIMESERIES).keys()
    assert len(items) > 1
    for kind in KINDS:
        assert records(demo_db, kind).keys() == items


def test_each_series_record_decodes_to_the_items_forecast_rows(demo_db: Path) -> None:
    series = records(demo_db, SERIES)
    con = duckdb.connect(str(demo_db / "data.duckdb"), read_only=True)
    nulls = 0
    try:
        for item_id, record in series.items():
            rows = con.execute(
                "SELECT strftime(date, '%Y-%m-%d'), yhat, yhat_lower, yhat_upper, actual "
                "FROM fact_forecast WHERE item_id = ? ORDER BY date",
                [item_id],
            ).fetchall()
            whole = slice_series(record, None, None)
            decoded = list(
                zip(
                    whole.dates,
                    whole.yhat,
                    whole.yhat_lower,
                    whole.yhat_upper,
                    whole.actual,
                    strict=True,
                )
            )
            assert decoded == rows, item_id
            nulls += sum(row[4] is None for row in rows)
    finally:
        con.close()
    assert nulls, "the demo has days without actuals: the test must see some"


def test_each_series_record_is_the_one_encode_series_writes(demo_db: Path) -> None:
    series = records(demo_db, SERIES)
    con = duckdb.connect(str(demo_db / "data.duckdb"), read_only=True)
    try:
        for item_id, record in series.items():
            rows = con.execute(
                "SELECT date - DATE '1970-01-01', yhat, yhat_lower, yhat_upper, actual "
                "FROM fact_forecast WHERE item_id = ? ORDER BY date",
                [item_id],
            ).fetchall()
            columns = [list(column) for column in zip(*rows, strict=True)]
            assert record == encode_series(*columns), item_id
    finally:
        con.close()


def test_the_json_answers_are_gzip_of_each_items_body(demo_db: Path) -> None:
    for kind in (TIMESERIES, INVENTORY):
        for item_id, data in records(demo_db, kind).items():
            assert f'"item_id":"{item_id}"'.encode() in decompress(data)


def test_answers_that_do_not_fit_the_memory_limit_are_a_fault_of_the_node(
    demo_tables: Path, tmp_path: Path
) -> None:
    con = duckdb.connect()
    try:
        load_tables(con, demo_tables)
        con.execute("SET memory_limit = '2MB'")
        (tmp_path / "v0001").mkdir()
        with pytest.raises(duckdb.OutOfMemoryException) as caught:
            build_answers(con, tmp_path / "v0001", METADATA, quiet)
    finally:
        con.close()
    fault = node_fault(caught.value, "building the answers")
    assert fault is not None and fault.reason == "out-of-memory"
    assert "\n" not in str(fault) and "raise --import-memory" in str(fault)
