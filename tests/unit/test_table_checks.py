"""The registry's limits on values and row counts, as table_checks applies them in DuckDB."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from appliance.errors import SchemaError
from appliance.packs.schema_registry import load_registry, parse_registry
from appliance.packs.table_checks import table_problems

REGISTRY = load_registry()


def problems_of(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """The data problems of table `name` holding `rows` (other columns: valid values)."""
    table = REGISTRY.table(name)
    defaults: dict[str, Any] = {
        "item_id": "A-1",
        "name": "bolt",
        "category": "Power",
        "site": "REC-01",
        "unit": "ea",
        "lead_time_days": 5,
        "unit_cost": 1.0,
        "date": "2026-11-01",
        "yhat": 1.0,
        "yhat_lower": 0.5,
        "yhat_upper": 1.5,
        "actual": None,
        "model_version": "m1",
        "generated_at": "2026-11-01T06:00:00Z",
        "source": "ensemble",
        "dataset_id": "d1",
    }
    con = duckdb.connect()
    columns = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in table.columns)
    con.execute(f"CREATE TABLE t ({columns})")
    for row in rows:
        values = [row.get(c.name, defaults.get(c.name)) for c in table.columns]
        marks = ", ".join("?" for _ in values)
        con.execute(f"INSERT INTO t VALUES ({marks})", values)
    _, data = table_problems(con, table, "t", None)
    return data


def test_strings_up_to_their_cap_pass_and_longer_ones_do_not() -> None:
    assert problems_of("dim_item", [{"name": "é" * 200}]) == []
    assert problems_of("dim_item", [{"name": "x" * 201}]) == [
        "dim_item: 1 row(s) with name longer than 200 characters"
    ]
    assert problems_of("dim_item", [{"category": "x" * 1_000_000}]) == [
        "dim_item: 1 row(s) with category longer than 64 characters"
    ]


def test_dates_inside_the_range_pass_and_outside_do_not() -> None:
    edges = [{"date": "1900-01-01"}, {"item_id": "A-2", "date": "2200-12-31"}]
    assert problems_of("fact_forecast", edges) == []
    assert problems_of("fact_forecast", [{"date": "1899-12-31"}]) == [
        "fact_forecast: 1 row(s) with date before 1900-01-01"
    ]
    assert problems_of("fact_forecast", [{"date": "200000-01-01"}]) == [
        "fact_forecast: 1 row(s) with date after 2200-12-31"
    ]


def test_a_table_that_must_not_be_empty_is_refused_empty() -> None:
    assert problems_of("fact_forecast", [{}]) == []
    assert problems_of("fact_forecast", []) == [
        "fact_forecast: 0 row(s), the registry needs at least 1"
    ]


def test_every_gold_table_must_hold_rows_and_every_string_has_a_cap() -> None:
    for table in REGISTRY.tables.values():
        assert table.min_rows >= 1, table.name
        for column in table.data_columns:
            if column.type == "string":
                assert column.max_length, f"{table.name}.{column.name}"
            if column.type == "date":
                assert (column.min, column.max) != (None, None), f"{table.name}.{column.name}"


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        ({"max_length": 10}, "only a string has max_length"),
        ({"type": "string", "max_length": 0}, "max_length must be a whole number >= 1"),
        ({"type": "string", "max_length": True}, "max_length must be a whole number >= 1"),
        ({"min": "1900-01-01", "type": "string"}, "only a date has min"),
        ({"max": "someday"}, "max must be a YYYY-MM-DD day"),
    ],
)
def test_the_registry_reader_refuses_limits_that_do_not_fit_the_column(
    limit: dict[str, Any], words: str
) -> None:
    column = {"name": "date", "type": "date", "nullable": False} | limit
    raw = {
        "registry_version": 1,
        "metadata_columns": [
            {"name": c.name, "type": c.type, "nullable": c.nullable}
            for c in REGISTRY.table("dim_item").columns
            if c not in REGISTRY.table("dim_item").data_columns
        ],
        "tables": {
            "t": {"columns": [column], "primary_key": ["date"], "sort_key": ["date"]},
        },
    }
    with pytest.raises(SchemaError, match=words):
        parse_registry(raw)
