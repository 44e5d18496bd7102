"""The schema registry: which gold tables a result pack may carry, and their exact column types."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from appliance.errors import SchemaError
from appliance.packs.pack_layout import METADATA_COLUMNS

if TYPE_CHECKING:
    from appliance.packs.parquet_footer import FileColumn

REGISTRY_RESOURCE = "schema_registry.json"

# Registry type name -> (DuckDB type, Parquet converted type a file's column must also carry).
# The converted type tells apart what DuckDB reads as one type: a timestamp in milliseconds from
# one in microseconds, an enum or JSON from a string. None: the DuckDB type alone is exact.
TYPE_NAMES: dict[str, tuple[str, str | None]] = {
    "string": ("VARCHAR", "UTF8"),
    "int32": ("INTEGER", None),
    "double": ("DOUBLE", None),
    "date": ("DATE", None),
    "timestamp": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP_MICROS"),
}


@dataclass(frozen=True)
class Column:
    """One column of a gold table."""

    name: str
    type: str
    nullable: bool
    doc: str
    pattern: str | None = None
    max_length: int | None = None  # strings: the most characters a value may have
    min: date | None = None  # dates: the earliest day a value may be
    max: date | None = None  # dates: the latest day a value may be

    @property
    def duckdb_type(self) -> str:
        """The DuckDB type this column is stored as on the node."""
        return TYPE_NAMES[self.type][0]

    def describe(self) -> dict[str, Any]:
        """The column as written into a pack manifest's `schema` list."""
        return {"name": self.name, "type": self.type, "nullable": self.nullable}


@dataclass(frozen=True)
class RowCheck:
    """An invariant every row must satisfy, as a SQL boolean expression over the row's columns."""

    name: str
    sql: str


@dataclass(frozen=True)
class TableSchema:
    """A gold table: its columns (data columns, then the metadata columns) and keys."""

    name: str
    doc: str
    required: bool
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    sort_key: tuple[str, ...]
    foreign_keys: dict[str, str]
    checks: tuple[RowCheck, ...] = ()
    min_rows: int = 0

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of every column, in order."""
        return tuple(column.name for column in self.columns)

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """The columns that are not traceability metadata."""
        return tuple(c for c in self.columns if c.name not in METADATA_COLUMNS)

    def describe(self) -> list[dict[str, Any]]:
        """The schema as written into a pack manifest."""
        return [column.describe() for column in self.columns]


@dataclass(frozen=True)
class SchemaRegistry:
    """Every gold table, by name, at one registry version."""

    version: int
    tables: dict[str, TableSchema]

    def table(self, name: str) -> TableSchema:
        """Return table `name`, or raise SchemaError naming the known tables."""
        try:
            return self.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.tables))
            msg = f"unknown table {name!r} (the registry knows {known})"
            raise SchemaError(msg) from None

    @property
    def required_tables(self) -> tuple[str, ...]:
        """Tables every pack must carry."""
        return tuple(name for name, table in self.tables.items() if table.required)


def _limit(raw: dict[str, Any], key: str, column_type: str) -> Any:
    """A column's limit `key`, which only columns of `column_type` may have."""
    value = raw.get(key)
    if value is not None and raw["type"] != column_type:
        msg = f"schema registry: column {raw['name']!r} is {raw['type']}, only a {column_type} has {key}"
        raise SchemaError(msg)
    return value


def _day(raw: dict[str, Any], key: str) -> date | None:
    value = _limit(raw, key, "date")
    try:
        return None if value is None else date.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        msg = f"schema registry: column {raw['name']!r}: {key} must be a YYYY-MM-DD day"
        raise SchemaError(msg) from exc


def _column(raw: dict[str, Any]) -> Column:
    if raw["type"] not in TYPE_NAMES:
        msg = f"schema registry: column {raw['name']!r} has unknown type {raw['type']!r}"
        raise SchemaError(msg)
    max_length = _limit(raw, "max_length", "string")
    if max_length is not None and (type(max_length) is not int or max_length < 1):
        msg = f"schema registry: column {raw['name']!r}: max_length must be a whole number >= 1"
        raise SchemaError(msg)
    return Column(
        raw["name"],
        raw["type"],
        bool(raw["nullable"]),
        raw.get("doc", ""),
        raw.get("pattern"),
        max_length,
        _day(raw, "min"),
        _day(raw, "max"),
    )


def parse_registry(raw: dict[str, Any]) -> SchemaRegistry:
    """Build a registry from its JSON form."""
    metadata = tuple(_column(c) for c in raw["metadata_columns"])
    if tuple(c.name for c in metadata) != METADATA_COLUMNS:
        msg = f"schema registry: metadata columns must be {', '.join(METADATA_COLUMNS)}"
        raise SchemaError(msg)
    tables = {}
    for name, spec in raw["tables"].items():
        columns = tuple(_column(c) for c in spec["columns"]) + metadata
        tables[name] = TableSchema(
            name=name,
            doc=spec.get("doc", ""),
            required=bool(spec.get("required", True)),
            columns=columns,
            primary_key=tuple(spec["primary_key"]),
            sort_key=tuple(spec["sort_key"]),
            foreign_keys=dict(spec.get("foreign_keys", {})),
            checks=tuple(RowCheck(c["name"], c["sql"]) for c in spec.get("checks", [])),
            min_rows=int(spec.get("min_rows", 0)),
        )
    return SchemaRegistry(version=int(raw["registry_version"]), tables=tables)


@cache
def load_registry() -> SchemaRegistry:
    """The registry shipped with this version of the appliance."""
    text = (
        resources.files("appliance.packs").joinpath(REGISTRY_RESOURCE).read_text(encoding="utf-8")
    )
    return parse_registry(json.loads(text))


def registry_type(column: FileColumn) -> str | None:
    """The registry type a file's column holds exactly, or None."""
    for name, (duckdb_type, converted_type) in TYPE_NAMES.items():
        if column.duckdb_type == duckdb_type and converted_type in (None, column.converted_type):
            return name
    return None


def _stored_as(type_name: str) -> str:
    """How a registry type must be stored, for a message."""
    duckdb_type, converted_type = TYPE_NAMES[type_name]
    return f"{duckdb_type}, Parquet {converted_type}" if converted_type else duckdb_type


def schema_problems(table: TableSchema, actual: Sequence[FileColumn]) -> list[str]:
    """Differences in names, order and types between a Parquet file's columns and the registry's.

    Nullability is not compared: writers declare most columns optional, so nulls in non-nullable
    columns are found by counting them in the data instead.
    """
    problems: list[str] = []
    expected_names = table.column_names
    actual_names = tuple(column.name for column in actual)
    missing = [n for n in expected_names if n not in actual_names]
    extra = [n for n in actual_names if n not in expected_names]
    repeated = sorted({n for n in actual_names if actual_names.count(n) > 1})
    if missing:
        problems.append(f"{table.name}: missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"{table.name}: unexpected column(s) {', '.join(extra)}")
    if repeated:
        problems.append(f"{table.name}: repeated column(s) {', '.join(repeated)}")
    found = {column.name: column for column in actual}
    for column in table.columns:
        if column.name not in found:
            continue
        file_column = found[column.name]
        held = registry_type(file_column)
        if held != column.type:
            problems.append(
                f"{table.name}.{column.name}: type is {held or file_column.describe()}, registry says {column.type} ({_stored_as(column.type)})"
            )
    if not missing and not extra and not repeated and actual_names != expected_names:
        problems.append(
            f"{table.name}: columns must be in registry order: {', '.join(expected_names)}"
        )
    return problems
