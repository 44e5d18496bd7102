"""Data checks on gold tables loaded in DuckDB: nulls, metadata, patterns, limits, row counts, keys.

The same checks run on the ML workstation before a pack is signed and on the node before a
version is published, so a pack that passes `mlws pack` passes `appliance import`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from appliance.packs.pack_layout import METADATA_COLUMNS
from appliance.packs.schema_registry import Column, SchemaRegistry, TableSchema

if TYPE_CHECKING:
    import duckdb


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (DuckDB's epoch_us of a TIMESTAMPTZ)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_epoch_us(value: int) -> datetime:
    """The UTC instant `value` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=value)


def quote(identifier: str) -> str:
    """Quote a SQL identifier for DuckDB."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Quote a SQL string literal for DuckDB (only for our own paths and registry values)."""
    return "'" + text.replace("'", "''") + "'"


def _limit_rules(column: Column) -> list[tuple[str, str, str]]:
    """The column's length and range limits, as (kind, description, SQL condition of a bad row)."""
    name = quote(column.name)
    rules: list[tuple[str, str, str]] = []
    if column.max_length is not None:
        rules.append(
            (
                "data",
                f"{column.name} longer than {column.max_length:,} characters",
                f"length({name}) > {column.max_length}",
            )
        )
    if column.min is not None:
        day = f"DATE {literal(column.min.isoformat())}"
        rules.append(("data", f"{column.name} before {column.min}", f"{name} < {day}"))
    if column.max is not None:
        day = f"DATE {literal(column.max.isoformat())}"
        rules.append(("data", f"{column.name} after {column.max}", f"{name} > {day}"))
    return rules


def _row_problems(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    relation: str,
    metadata: Mapping[str, Any] | None,
) -> tuple[list[str], list[str]]:
    """Count, in one scan, the rows and those that break each per-row rule; (metadata, data)."""
    rules: list[tuple[str, str, str]] = []  # (kind, description, SQL condition of a bad row)
    params: list[Any] = []
    for column in table.columns:
        name = quote(column.name)
        if metadata is not None and column.name in METADATA_COLUMNS:
            expected = metadata[column.name]
            # Timestamps compare as integers: DuckDB hands TIMESTAMPTZ to Python only via pytz.
            value = f"epoch_us({name})" if column.type == "timestamp" else name
            rules.append(
                (
                    "metadata",
                    f"{column.name} other than the pack's ({expected!s})",
                    f"{value} IS DISTINCT FROM ?",
                )
            )
            params.append(epoch_us(expected) if column.type == "timestamp" else expected)
        elif not column.nullable:
            rules.append(("data", f"null {column.name}", f"{name} IS NULL"))
        if column.pattern:
            rules.append(
                (
                    "data",
                    f"{column.name} not matching {column.pattern}",
                    f"NOT regexp_full_match({name}, {literal(column.pattern)})",
                )
            )
        rules += _limit_rules(column)
    rules += [("data", f"rows breaking '{c.name}'", f"NOT ({c.sql})") for c in table.checks]
    counts = ", ".join(f"count(*) FILTER (WHERE {condition})" for *_, condition in rules)
    row = con.execute(f"SELECT count(*), {counts} FROM {relation}", params).fetchone()
    total, *bad_rows = row if row is not None else (0,) * (len(rules) + 1)
    metadata_problems: list[str] = []
    data_problems: list[str] = []
    if total < table.min_rows:
        data_problems.append(
            f"{table.name}: {total:,} row(s), the registry needs at least {table.min_rows:,}"
        )
    for (kind, description, _), bad in zip(rules, bad_rows, strict=True):
        if bad:
            line = f"{table.name}: {bad:,} row(s) with {description}"
            (metadata_problems if kind == "metadata" else data_problems).append(line)
    return metadata_problems, data_problems


def _duplicate_keys(con: duckdb.DuckDBPyConnection, table: TableSchema, relation: str) -> int:
    keys = ", ".join(quote(k) for k in table.primary_key)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {relation} GROUP BY {keys} HAVING count(*) > 1)"
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def table_problems(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    relation: str,
    metadata: Mapping[str, Any] | None,
) -> tuple[list[str], list[str]]:
    """Problems with one table's rows: (metadata problems, data problems), each a readable line.

    `metadata` holds the values every row's metadata columns must equal; None skips that check.
    """
    metadata_problems, data_problems = _row_problems(con, table, relation, metadata)
    duplicates = _duplicate_keys(con, table, relation)
    if duplicates:
        key = ", ".join(table.primary_key)
        data_problems.append(f"{table.name}: {duplicates:,} duplicated primary key(s) ({key})")
    return metadata_problems, data_problems


def foreign_key_problems(
    con: duckdb.DuckDBPyConnection,
    registry: SchemaRegistry,
    relations: Mapping[str, str],
) -> list[str]:
    """Rows whose foreign keys point at nothing, for every table present in `relations`."""
    problems = []
    for name, relation in relations.items():
        for column, target in registry.table(name).foreign_keys.items():
            parent_table, parent_column = target.split(".")
            if parent_table not in relations:
                continue
            sql = (
                f"SELECT count(*) FROM {relation} AS c "
                f"WHERE c.{quote(column)} IS NOT NULL AND NOT EXISTS ("
                f"SELECT 1 FROM {relations[parent_table]} AS p "
                f"WHERE p.{quote(parent_column)} = c.{quote(column)})"
            )
            row = con.execute(sql).fetchone()
            if row and row[0]:
                problems.append(f"{name}: {row[0]:,} row(s) whose {column} is not in {target}")
    return problems
