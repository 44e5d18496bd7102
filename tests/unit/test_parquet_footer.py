"""Tests of appliance.packs.parquet_footer and the schema check on it (schema_registry.schema_problems).

The node reads Parquet footers with DuckDB, not pyarrow. Here pyarrow writes a column in every type
a writer may pick, and the check must find the same registry type that pyarrow reads from the
Parquet schema, or none: the node accepts nothing that pyarrow would have read as another type.
The one thing it does not see is the Arrow schema pyarrow stores beside the Parquet one.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.errors import UnreadableParquet
from appliance.packs.parquet_footer import FileColumn, read_footer
from appliance.packs.schema_registry import load_registry, registry_type, schema_problems

# The Arrow type pyarrow reads each registry type as.
ARROW_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "double": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
MOMENT = datetime(2026, 11, 1, 6, tzinfo=UTC)
LOCAL_MOMENT = datetime(2026, 11, 1, 6)  # a timestamp without a time zone

# Column values as a writer may type them: (id, Arrow array, extra pq.write_table options).
WRITTEN: list[tuple[str, pa.Array, dict[str, Any]]] = [
    ("string", pa.array(["a"], pa.string()), {}),
    ("large_string", pa.array(["a"], pa.large_string()), {}),
    ("dictionary_string", pa.array(["a"]).dictionary_encode(), {}),
    ("binary", pa.array([b"a"], pa.binary()), {}),
    ("fixed_size_binary", pa.array([b"a"], pa.binary(1)), {}),
    ("int32", pa.array([1], pa.int32()), {}),
    ("int8", pa.array([1], pa.int8()), {}),
    ("int16", pa.array([1], pa.int16()), {}),
    ("int64", pa.array([1], pa.int64()), {}),
    ("uint32", pa.array([1], pa.uint32()), {}),
    ("bool", pa.array([True]), {}),
    ("float32", pa.array([1.0], pa.float32()), {}),
    ("float64", pa.array([1.0], pa.float64()), {}),
    ("decimal", pa.array([Decimal("1.5")], pa.decimal128(10, 2)), {}),
    ("date32", pa.array([date(2026, 11, 1)], pa.date32()), {}),
    ("date64", pa.array([date(2026, 11, 1)], pa.date64()), {}),
    ("time_us", pa.array([3600_000_000], pa.time64("us")), {}),
    ("timestamp_s_utc", pa.array([MOMENT], pa.timestamp("s", tz="UTC")), {}),
    ("timestamp_ms_utc", pa.array([MOMENT], pa.timestamp("ms", tz="UTC")), {}),
    ("timestamp_us_utc", pa.array([MOMENT], pa.timestamp("us", tz="UTC")), {}),
    ("timestamp_ns_utc", pa.array([MOMENT], pa.timestamp("ns", tz="UTC")), {}),
    ("timestamp_us_local", pa.array([LOCAL_MOMENT], pa.timestamp("us")), {}),
    ("timestamp_ms_local", pa.array([LOCAL_MOMENT], pa.timestamp("ms")), {}),
    (
        "timestamp_int96",
        pa.array([MOMENT], pa.timestamp("us", tz="UTC")),
        {"use_deprecated_int96_timestamps": True},
    ),
    (
        "timestamp_us_utc_parquet_1_0",
        pa.array([MOMENT], pa.timestamp("us", tz="UTC")),
        {"version": "1.0"},
    ),
    ("list_of_int32", pa.array([[1]], pa.list_(pa.int32())), {}),
    ("struct", pa.array([{"a": 1}], pa.struct([("a", pa.int32())])), {}),
]

# Arrow types that only the Arrow schema pyarrow stores in the file tells apart from a registry
# type; the Parquet column is the registry type's, so DuckDB reads them as that type.
ARROW_ONLY: list[tuple[str, pa.Array, str]] = [
    ("large_string", pa.array(["a"], pa.large_string()), "string"),
    ("string_view", pa.array(["a"], pa.string_view()), "string"),
    ("dictionary_string", pa.array(["a"]).dictionary_encode(), "string"),
    ("timestamp_plus_00_00", pa.array([MOMENT], pa.timestamp("us", tz="+00:00")), "timestamp"),
    ("timestamp_berlin", pa.array([MOMENT], pa.timestamp("us", tz="Europe/Berlin")), "timestamp"),
]

# Columns as DuckDB's COPY writes them from a DuckDB type: (DuckDB type, registry type or None).
DUCKDB_WRITTEN = [
    ("VARCHAR", "string"),
    ("BLOB", None),
    ("INTEGER", "int32"),
    ("BIGINT", None),
    ("SMALLINT", None),
    ("UINTEGER", None),
    ("DOUBLE", "double"),
    ("FLOAT", None),
    ("DATE", "date"),
    ("TIMESTAMP WITH TIME ZONE", "timestamp"),
    ("TIMESTAMP", None),
    ("TIMESTAMP_MS", None),
    ("TIMESTAMP_NS", None),
    ("JSON", None),
    ("UUID", None),
    ("ENUM('a', 'b')", "string"),  # DuckDB writes an enum's values as strings
]


def write_column(path: Path, values: pa.Array, **options: Any) -> Path:
    """Write a one-column Parquet file `c` with pyarrow."""
    pq.write_table(pa.table({"c": values}), path, **options)
    return path


def registry_type_for_pyarrow(path: Path) -> str | None:
    """The registry type whose Arrow type pyarrow reads column `c` of the file as, or None."""
    arrow_type = pq.read_schema(path).field("c").type
    matches = [name for name, want in ARROW_TYPES.items() if arrow_type.equals(want)]
    return matches[0] if matches else None


def only_column(path: Path) -> FileColumn:
    (column,) = read_footer(path).columns
    return column


@pytest.mark.parametrize(
    ("values", "options"), [c[1:] for c in WRITTEN], ids=[c[0] for c in WRITTEN]
)
def test_column_has_the_registry_type_pyarrow_reads_it_as(
    tmp_path: Path, values: pa.Array, options: dict[str, Any]
) -> None:
    # Without the stored Arrow schema, pyarrow reads the Parquet schema alone, as the node does.
    path = write_column(tmp_path / "t.parquet", values, store_schema=False, **options)
    assert registry_type(only_column(path)) == registry_type_for_pyarrow(path)


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in ARROW_ONLY], ids=[c[0] for c in ARROW_ONLY]
)
def test_the_arrow_schema_pyarrow_stores_is_not_read(
    tmp_path: Path, values: pa.Array, expected: str
) -> None:
    path = write_column(tmp_path / "t.parquet", values)
    assert registry_type_for_pyarrow(path) is None
    assert registry_type(only_column(path)) == expected


@pytest.mark.parametrize(("duckdb_type", "expected"), DUCKDB_WRITTEN)
def test_column_written_by_duckdb(tmp_path: Path, duckdb_type: str, expected: str | None) -> None:
    path = tmp_path / "t.parquet"
    duckdb.execute(f"COPY (SELECT CAST(NULL AS {duckdb_type}) AS c) TO '{path}' (FORMAT parquet)")
    assert registry_type_for_pyarrow(path) == expected
    assert registry_type(only_column(path)) == expected


def test_footer_lists_top_level_columns_in_file_order_and_counts_rows(tmp_path: Path) -> None:
    table = pa.table(
        {
            "s": pa.array([{"a": 1, "b": "x"}] * 3),
            "l": pa.array([[1, 2]] * 3, pa.list_(pa.int32())),
            "b": pa.array(["y"] * 3),
            "a": pa.array([1] * 3, pa.int32()),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    footer = read_footer(tmp_path / "t.parquet")
    assert footer.rows == 3
    assert [(c.name, c.duckdb_type) for c in footer.columns] == [
        ("s", "STRUCT(a BIGINT, b VARCHAR)"),
        ("l", "INTEGER[]"),
        ("b", "VARCHAR"),
        ("a", "INTEGER"),
    ]
    assert [registry_type(c) for c in footer.columns] == [None, None, "string", "int32"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"item_id,name\nA-1,bolt\n", "No magic bytes found at end of file 't.parquet'"),
        (b"", "too small to be a Parquet file"),
    ],
)
def test_unreadable_file_is_one_line_without_its_folder(
    tmp_path: Path, content: bytes, words: str
) -> None:
    (tmp_path / "t.parquet").write_bytes(content)
    with pytest.raises(UnreadableParquet) as raised:
        read_footer(tmp_path / "t.parquet")
    message = str(raised.value)
    assert words in message
    assert "\n" not in message
    assert str(tmp_path) not in message


def test_truncated_file_is_unreadable(tmp_path: Path) -> None:
    path = write_column(tmp_path / "t.parquet", pa.array(["a"] * 100))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UnreadableParquet):
        read_footer(path)


# --- schema_problems ----------------------------------------------------------------------------

DIM_ITEM = load_registry().table("dim_item")


def dim_item_columns() -> list[FileColumn]:
    """dim_item's columns exactly as the registry wants them (as DuckDB's COPY writes them)."""
    stored = {
        "string": ("VARCHAR", "BYTE_ARRAY", "UTF8"),
        "int32": ("INTEGER", "INT32", "INT_32"),
        "double": ("DOUBLE", "DOUBLE", None),
        "timestamp": ("TIMESTAMP WITH TIME ZONE", "INT64", "TIMESTAMP_MICROS"),
    }
    return [FileColumn(c.name, *stored[c.type]) for c in DIM_ITEM.columns]


def replaced(columns: list[FileColumn], name: str, **fields: Any) -> list[FileColumn]:
    """`columns` with column `name` given other fields."""
    return [dataclasses.replace(c, **fields) if c.name == name else c for c in columns]


def test_the_registry_schema_has_no_problems() -> None:
    assert schema_problems(DIM_ITEM, dim_item_columns()) == []


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        (
            "lead_time_days",
            {"duckdb_type": "BIGINT", "physical_type": "INT64", "converted_type": None},
            "dim_item.lead_time_days: type is BIGINT (Parquet INT64), registry says int32 (INTEGER)",
        ),
        (
            "unit_cost",
            {"duckdb_type": "VARCHAR", "physical_type": "BYTE_ARRAY", "converted_type": "UTF8"},
            "dim_item.unit_cost: type is string, registry says double (DOUBLE)",
        ),
        (
            "item_id",
            {"duckdb_type": "BLOB", "converted_type": None},
            "dim_item.item_id: type is BLOB (Parquet BYTE_ARRAY), registry says string (VARCHAR, Parquet UTF8)",
        ),
        (
            "generated_at",
            {"converted_type": "TIMESTAMP_MILLIS"},
            "dim_item.generated_at: type is TIMESTAMP WITH TIME ZONE (Parquet INT64 TIMESTAMP_MILLIS), registry says timestamp (TIMESTAMP WITH TIME ZONE, Parquet TIMESTAMP_MICROS)",
        ),
        (
            "generated_at",
            {"duckdb_type": "TIMESTAMP"},
            "dim_item.generated_at: type is TIMESTAMP (Parquet INT64 TIMESTAMP_MICROS), registry says timestamp (",
        ),
    ],
)
def test_a_column_of_another_type_is_named_with_both_types(
    name: str, change: dict[str, str | None], problem: str
) -> None:
    (found,) = schema_problems(DIM_ITEM, replaced(dim_item_columns(), name, **change))
    assert found.startswith(problem)


def test_missing_extra_and_repeated_columns_are_named() -> None:
    columns = [c for c in dim_item_columns() if c.name != "unit"]
    columns.append(FileColumn("note", "VARCHAR", "BYTE_ARRAY", "UTF8"))
    columns.append(columns[0])
    assert schema_problems(DIM_ITEM, columns) == [
        "dim_item: missing column(s) unit",
        "dim_item: unexpected column(s) note",
        "dim_item: repeated column(s) item_id",
    ]


def test_columns_must_come_in_registry_order() -> None:
    first, second, *rest = dim_item_columns()
    assert schema_problems(DIM_ITEM, [second, first, *rest]) == [
        f"dim_item: columns must be in registry order: {', '.join(DIM_ITEM.column_names)}"
    ]
