"""Conform input tables to the schema registry, losslessly, and report every problem at once.

ML pipelines write Parquet the way their library does: pandas stores timestamps in nanoseconds,
dates as timestamps at midnight, int64 for every integer, categoricals as dictionaries, and every
column nullable. The node takes exactly the registry's types and nothing else, and stays that
strict. So the workstation converts what it can convert without losing information (the rules
below, as data: which input type becomes which registry type, and which rows the conversion
would lose), refuses the rest, and names every problem with its table, column, what was found,
what the registry says and a few example rows. The checks the node runs are then run again on
the conformed files before anything is signed (pack_builder.py).

Rows are numbered from 0 in the input's order (pandas' iloc, Parquet's row order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from appliance.errors import SchemaError
from appliance.packs.pack_layout import METADATA_COLUMNS
from appliance.packs.schema_registry import (
    TYPE_NAMES,
    Column,
    SchemaRegistry,
    TableSchema,
    registry_type,
    schema_problems,
)
from appliance.packs.table_checks import epoch_us, literal, quote

if TYPE_CHECKING:
    import duckdb

    from ml_workstation.inputs import StagedTable

EXAMPLE_ROWS = 5  # example rows a problem names
EXAMPLE_CHARS = 80  # the most characters of a value an example shows
ROW = "__mlws_row"  # the input row number in a conformed view
INT32_RANGE = "-2,147,483,648..2,147,483,647"


@dataclass(frozen=True)
class Rule:
    """How one kind of input column becomes one registry type.

    `cast` is SQL giving the registry value from the input value {v} (of DuckDB type {t}); it
    never fails, a value it cannot convert gives NULL. `loss` is SQL that is true for a non-null
    input value the conversion would lose or change; `reason` says what is wrong with such a row.
    """

    label: str
    cast: str
    loss: str | None = None
    reason: str = ""


# The kinds of input column, by DuckDB type (see `kind_of`).
INTEGER, FLOAT, DECIMAL, STRING, CATEGORICAL, DATE = (
    "integer",
    "float",
    "decimal",
    "string",
    "categorical",
    "date",
)
NAIVE_TIMESTAMP, UTC_TIMESTAMP, UTC_TIMESTAMP_NS, TEXT, ALL_NULL = (
    "timestamp without time zone",
    "timestamp",
    "timestamp in nanoseconds",
    "text",
    "all-null",
)

# DuckDB type -> the kind of input column it is; DECIMAL(p, s) and ENUM(...) go by prefix.
_KINDS: dict[str, str] = {
    **dict.fromkeys(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"), INTEGER),
    **dict.fromkeys(("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"), INTEGER),
    "FLOAT": FLOAT,
    "DOUBLE": FLOAT,
    "VARCHAR": STRING,
    "DATE": DATE,
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"), NAIVE_TIMESTAMP),
    "TIMESTAMP WITH TIME ZONE": UTC_TIMESTAMP,
    "TIMESTAMPTZ_NS": UTC_TIMESTAMP_NS,
    '"NULL"': ALL_NULL,
    "NULL": ALL_NULL,
}
# DuckDB type -> the registry's name for it, to speak of a column in the registry's words.
_REGISTRY_NAMES = {duckdb_type: name for name, (duckdb_type, _) in TYPE_NAMES.items()}
_KIND_PREFIXES = (("DECIMAL", DECIMAL), ("ENUM", CATEGORICAL))
_TEXT_OFFSET = r"([zZ]|[+-][0-9][0-9](:?[0-9][0-9])?)$"
_TEXT_TIMESTAMP = "TRY_CAST({v} AS TIMESTAMPTZ_NS)"
_TEXT_DAY = "TRY_CAST({v} AS TIMESTAMP)"
_MIDNIGHT_LOSS = "CAST(CAST({v} AS DATE) AS {t}) <> {v}"

# (input kind, registry type) -> the lossless conversion. Absent: refused.
RULES: dict[tuple[str, str], Rule] = {
    (CATEGORICAL, "string"): Rule("categorical to string", "CAST({v} AS VARCHAR)"),
    (INTEGER, "int32"): Rule(
        "integers to int32", "TRY_CAST({v} AS INTEGER)",
        "TRY_CAST({v} AS INTEGER) IS NULL", f"out of the int32 range ({INT32_RANGE})",
    ),
    (FLOAT, "int32"): Rule(
        "whole-number floats to int32", "TRY_CAST({v} AS INTEGER)",
        "TRY_CAST({v} AS INTEGER) IS NULL OR TRY_CAST({v} AS INTEGER) <> {v}",
        f"not a whole number in the int32 range ({INT32_RANGE})",
    ),
    (DECIMAL, "int32"): Rule(
        "whole-number decimals to int32", "TRY_CAST({v} AS INTEGER)",
        "TRY_CAST({v} AS INTEGER) IS NULL OR TRY_CAST({v} AS INTEGER) <> {v}",
        f"not a whole number in the int32 range ({INT32_RANGE})",
    ),
    (FLOAT, "double"): Rule("32-bit floats to 64-bit", "CAST({v} AS DOUBLE)"),
    (INTEGER, "double"): Rule(
        "integers to double", "TRY_CAST({v} AS DOUBLE)",
        "TRY_CAST(TRY_CAST({v} AS DOUBLE) AS HUGEINT) IS DISTINCT FROM {v}",
        "too large to be held exactly in a double",
    ),
    (DECIMAL, "double"): Rule(
        "decimals to double", "TRY_CAST({v} AS DOUBLE)",
        "TRY_CAST(TRY_CAST({v} AS DOUBLE) AS {t}) IS DISTINCT FROM {v}",
        "cannot be held exactly in a double",
    ),
    (NAIVE_TIMESTAMP, "date"): Rule(
        "timestamps at midnight to dates", "CAST({v} AS DATE)", _MIDNIGHT_LOSS, "with a time of day",
    ),
    (UTC_TIMESTAMP, "date"): Rule(
        "timestamps at midnight UTC to dates", "CAST({v} AS DATE)", _MIDNIGHT_LOSS,
        "with a time of day (UTC)",
    ),
    (UTC_TIMESTAMP_NS, "date"): Rule(
        "timestamps at midnight UTC to dates", "CAST({v} AS DATE)", _MIDNIGHT_LOSS,
        "with a time of day (UTC)",
    ),
    (UTC_TIMESTAMP_NS, "timestamp"): Rule(
        "nanoseconds to microseconds", "CAST({v} AS TIMESTAMPTZ)",
        "epoch_ns({v}) % 1000 <> 0", "with sub-microsecond digits",
    ),
    (TEXT, "string"): Rule("", "{v}"),
    (TEXT, "int32"): Rule(
        "text to int32", "TRY_CAST({v} AS INTEGER)",
        "TRY_CAST({v} AS INTEGER) IS NULL OR TRY_CAST({v} AS DOUBLE) <> TRY_CAST({v} AS INTEGER)",
        f"not a whole number in the int32 range ({INT32_RANGE})",
    ),
    (TEXT, "double"): Rule(
        "text to double", "TRY_CAST({v} AS DOUBLE)", "TRY_CAST({v} AS DOUBLE) IS NULL",
        "not a number",
    ),
    (TEXT, "date"): Rule(
        "text to date", f"CAST({_TEXT_DAY} AS DATE)",
        f"{_TEXT_DAY} IS NULL OR CAST(CAST({_TEXT_DAY} AS DATE) AS TIMESTAMP) <> {_TEXT_DAY}",
        "not a day (YYYY-MM-DD)",
    ),
    (TEXT, "timestamp"): Rule(
        "text to timestamp", f"CAST({_TEXT_TIMESTAMP} AS TIMESTAMPTZ)",
        f"NOT regexp_matches(trim({{v}}), {literal(_TEXT_OFFSET)}) OR {_TEXT_TIMESTAMP} IS NULL "
        f"OR epoch_ns({_TEXT_TIMESTAMP}) % 1000 <> 0",
        "not a timestamp with a UTC offset (e.g. 2026-11-01T06:00:00Z), to the microsecond",
    ),
}  # fmt: skip

# Why a kind of input is refused for a registry type, where a hint helps the user fix it.
REFUSALS: dict[tuple[str, str], str] = {
    (NAIVE_TIMESTAMP, "timestamp"): (
        "it has no time zone; the registry holds UTC instants: localize it to UTC "
        "(pandas .dt.tz_localize('UTC'), polars .dt.replace_time_zone('UTC'))"
    ),
    (DATE, "timestamp"): "a date is not an instant; give the time in UTC",
}


def kind_of(duckdb_type: str, *, text: bool = False) -> str:
    """The kind of input column a DuckDB type is, for looking up its conversion."""
    if text:
        return TEXT
    for prefix, kind in _KIND_PREFIXES:
        if duckdb_type.startswith(prefix):
            return kind
    return _KINDS.get(duckdb_type, duckdb_type)


def registry_says(column: Column) -> str:
    """What the registry says of a column, for a message."""
    duckdb_type, converted_type = TYPE_NAMES[column.type]
    stored = f"{duckdb_type}, Parquet {converted_type}" if converted_type else duckdb_type
    return f"{column.type} ({stored}){'' if column.nullable else ', not null'}"


def _where(table: str, column: str | None) -> str:
    """`table.column` for a message; a column name that is not a plain word is quoted."""
    if column is None:
        return table
    return f"{table}.{column if re.fullmatch(r'[A-Za-z0-9_]+', column) else repr(column)}"


@dataclass(frozen=True)
class Example:
    """One input row a problem applies to: its number and the value found there."""

    row: int
    value: str | None


@dataclass(frozen=True)
class Problem:
    """One way a table does not conform: where, what, how many rows and a few of them."""

    table: str
    column: str | None
    message: str  # what is wrong, e.g. "3 row(s) with null item_id"
    found: str | None = None
    expected: str | None = None
    rows: int | None = None  # rows affected; None when the whole column is
    examples: tuple[Example, ...] = ()

    def line(self) -> str:
        """The problem as one readable line."""
        where = _where(self.table, self.column)
        text = f"{where}: {self.message}"
        said = [f"found {self.found}"] if self.found is not None else []
        said += [f"registry says {self.expected}"] if self.expected is not None else []
        if said:
            text += f" ({', '.join(said)})"
        if self.examples:
            shown = ", ".join(
                f"row {e.row}" + ("" if e.value is None else f" = {e.value!r}")
                for e in self.examples
            )
            text += f"; e.g. {shown}"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The problem for `--json`."""
        return {
            "table": self.table,
            "column": self.column,
            "problem": self.message,
            "found": self.found,
            "registry": self.expected,
            "rows": self.rows,
            "examples": [{"row": e.row, "value": e.value} for e in self.examples],
        }


@dataclass(frozen=True)
class Conversion:
    """One lossless conversion made to a table: which column, from what, to what."""

    table: str
    column: str | None
    found: str
    registry: str
    how: str

    def line(self) -> str:
        """The conversion as one readable line."""
        where = _where(self.table, self.column)
        how = f" ({self.how})" if self.how else ""
        return f"{where}: {self.found} -> {self.registry}{how}"

    def as_dict(self) -> dict[str, Any]:
        """The conversion for `--json`."""
        return {
            "table": self.table,
            "column": self.column,
            "found": self.found,
            "registry": self.registry,
            "how": self.how,
        }


class TablesDoNotConform(SchemaError):
    """Some tables cannot be conformed to the registry without losing information."""

    def __init__(self, problems: list[Problem], conversions: list[Conversion]) -> None:
        first = problems[0].line()
        more = len(problems) - 1
        super().__init__(first if not more else f"{first} (and {more} more problem(s))")
        self.problems = problems
        refused = {(p.table, p.column) for p in problems}
        # What would have been converted: not the columns that are refused after all.
        self.conversions = [c for c in conversions if (c.table, c.column) not in refused]


@dataclass(frozen=True)
class ColumnPlan:
    """How one registry column is made from one input column."""

    column: Column
    source: str  # the input column's name
    source_type: str  # its DuckDB type
    found: str  # its type, for messages
    rule: Rule | None  # None: it is already of the registry's type

    def expression(self, name: str) -> str:
        """SQL giving the registry value from input column `name`."""
        if self.rule is None:
            return name
        return self.rule.cast.format(v=name, t=self.source_type)

    def written(self, name: str) -> str:
        """SQL writing the registry value from input column `name`, once no row is lost.

        The same conversion with CAST for TRY_CAST: DuckDB then knows a column without nulls
        stays without them, and writes it as a REQUIRED Parquet column, as `mlws demo` does.
        """
        return self.expression(name).replace("TRY_CAST(", "CAST(")

    def loss(self, name: str) -> str | None:
        """SQL true for a row whose value the conversion would lose, or None."""
        if self.rule is None or self.rule.loss is None:
            return None
        return f"{name} IS NOT NULL AND ({self.rule.loss.format(v=name, t=self.source_type)})"


@dataclass
class TablePlan:
    """How one input table becomes the registry's: its columns, the conversions, the problems."""

    schema: TableSchema
    staged: StagedTable
    columns: dict[str, ColumnPlan] = field(default_factory=dict)
    conversions: list[Conversion] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    as_is: bool = False  # the file is already what the node takes: it goes in byte for byte

    @property
    def name(self) -> str:
        """The table's registry name."""
        return self.schema.name

    @property
    def view(self) -> str:
        """The DuckDB view of the conformed rows (registry columns, plus the input row number)."""
        return f"mlws_conformed_{self.name}"

    @property
    def complete(self) -> bool:
        """Whether every data column could be planned (so row checks over them can run)."""
        return all(c.name in self.columns for c in self.schema.data_columns)

    def source_column(self, name: str) -> str:
        """The view's column holding input column `name` as it was."""
        return quote(f"__mlws_input_{name}")


def _found_type(staged: StagedTable, column: Column, duckdb_type: str) -> tuple[str, bool]:
    """An input column's type for messages, and whether the node takes it as `column`'s."""
    if staged.text:
        return "text", False
    if staged.footer is not None:
        file_column = next(c for c in staged.footer if c.name == column.name)
        held = registry_type(file_column)
        return held or file_column.describe(), held == column.type
    return _REGISTRY_NAMES.get(duckdb_type, duckdb_type), False


def plan_table(staged: StagedTable, schema: TableSchema) -> TablePlan:
    """Decide, from the columns alone, how each registry column is made; note what cannot be."""
    plan = TablePlan(schema, staged)
    name = schema.name
    if staged.footer is not None and not schema_problems(schema, staged.footer):
        plan.as_is = True
    names = staged.column_names
    if staged.footer is not None:
        file_names = [c.name for c in staged.footer]
        for repeated in sorted({n for n in file_names if file_names.count(n) > 1}):
            plan.problems.append(Problem(name, repeated, "column given more than once"))
    types = dict(staged.columns)
    for input_name in names:
        if input_name in schema.column_names:
            continue
        if input_name in staged.index_columns:
            plan.conversions.append(
                Conversion(name, input_name, types[input_name], "(left out)", "pandas index column")
            )
        else:
            plan.problems.append(
                Problem(
                    name,
                    input_name,
                    f"unexpected column; the registry's {name} has {', '.join(schema.column_names)}",
                    found=types[input_name],
                )
            )
    for column in schema.columns:
        if column.name not in types:
            if column.name in METADATA_COLUMNS:
                plan.conversions.append(
                    Conversion(
                        name, column.name, "absent", column.type, "filled from the pack's metadata"
                    )
                )
            else:
                plan.problems.append(
                    Problem(
                        name, column.name, "missing column", "no such column", registry_says(column)
                    )
                )
            continue
        _plan_column(plan, column, types[column.name])
    present = [n for n in names if n in schema.column_names]
    if present != [c for c in schema.column_names if c in present]:
        plan.conversions.append(
            Conversion(name, None, "columns in another order", "registry order", "reordered")
        )
    return plan


def _plan_column(plan: TablePlan, column: Column, duckdb_type: str) -> None:
    found, exact = _found_type(plan.staged, column, duckdb_type)
    kind = kind_of(duckdb_type, text=plan.staged.text)
    rule: Rule | None
    if exact or (duckdb_type == column.duckdb_type and plan.staged.footer is None):
        rule = None
    elif duckdb_type == column.duckdb_type:
        # DuckDB reads it as the registry's type, but the file stores it otherwise (milliseconds,
        # an enum, no UTF8 or timestamp annotation): rewriting it stores it the registry's way.
        rule = Rule(f"stored as {TYPE_NAMES[column.type][1] or column.duckdb_type}", "{v}")
    elif kind == ALL_NULL:
        rule = Rule("a column of nulls only", f"CAST({{v}} AS {column.duckdb_type})")
    else:
        rule = RULES.get((kind, column.type))
    if rule is None and not exact and duckdb_type != column.duckdb_type:
        hint = REFUSALS.get((kind, column.type))
        message = f"type is {found}, registry says {registry_says(column)}"
        plan.problems.append(
            Problem(plan.name, column.name, message + (f": {hint}" if hint else ""))
        )
        return
    plan.columns[column.name] = ColumnPlan(column, column.name, duckdb_type, found, rule)
    if rule is not None and rule.label:
        plan.conversions.append(Conversion(plan.name, column.name, found, column.type, rule.label))


def create_view(con: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    """Make the view of the conformed rows: each planned column converted, the input beside it."""
    selected = [f"{plan.staged.row} AS {quote(ROW)}"]
    for name, column in plan.columns.items():
        source = quote(column.source)
        selected.append(f"{column.expression(source)} AS {quote(name)}")
        selected.append(f"{source} AS {plan.source_column(name)}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote(plan.view)} AS "
        f"SELECT {', '.join(selected)} FROM {quote(plan.staged.relation)}"
    )


def carried_values(
    con: duckdb.DuckDBPyConnection, plans: Mapping[str, TablePlan]
) -> dict[str, set[Any]]:
    """The distinct non-null values of each metadata column across the tables that carry it."""
    from appliance.packs.table_checks import from_epoch_us

    carried: dict[str, set[Any]] = {column: set() for column in METADATA_COLUMNS}
    for plan in plans.values():
        for column in METADATA_COLUMNS:
            if column not in plan.columns:
                continue
            value = f"epoch_us({quote(column)})" if column == "generated_at" else quote(column)
            # Two distinct values already prove a disagreement: no need to read them all.
            rows = con.execute(
                f"SELECT DISTINCT {value} FROM {quote(plan.view)} WHERE {value} IS NOT NULL LIMIT 2"
            ).fetchall()
            for (found,) in rows:
                carried[column].add(from_epoch_us(found) if column == "generated_at" else found)
    return carried


@dataclass(frozen=True)
class _RowRule:
    column: str | None
    message: str  # after "N row(s) "
    condition: str  # SQL true for a bad row
    value: str  # SQL shown for an example row
    found: str | None = None
    expected: str | None = None


def _metadata_literal(column: Column, value: Any) -> tuple[str, str]:
    """(SQL of the column to compare, SQL literal of the pack's value)."""
    if isinstance(value, datetime):
        return f"epoch_us({quote(column.name)})", str(epoch_us(value))
    return quote(column.name), literal(str(value))


def _row_rules(plan: TablePlan, metadata: Mapping[str, Any]) -> list[_RowRule]:
    rules = []
    for name, planned in plan.columns.items():
        column, source = planned.column, plan.source_column(name)
        value = f"CAST({source} AS VARCHAR)"
        loss = planned.loss(source)
        if loss is not None and planned.rule is not None:
            rules.append(
                _RowRule(
                    name, planned.rule.reason, loss, value, planned.found, registry_says(column)
                )
            )
        if name in METADATA_COLUMNS:
            compared, expected = _metadata_literal(column, metadata[name])
            rules.append(
                _RowRule(
                    name,
                    f"with {name} other than the pack's ({metadata[name]!s})",
                    f"{compared} IS DISTINCT FROM {expected}",
                    value,
                )
            )
            continue
        quoted = quote(name)
        if not column.nullable:
            rules.append(_RowRule(name, f"with null {name}", f"{source} IS NULL", "NULL"))
        if column.pattern:
            rules.append(
                _RowRule(
                    name,
                    f"with {name} not matching {column.pattern}",
                    f"NOT regexp_full_match({quoted}, {literal(column.pattern)})",
                    value,
                )
            )
        if column.max_length is not None:
            rules.append(
                _RowRule(
                    name,
                    f"with {name} longer than {column.max_length:,} characters",
                    f"length({quoted}) > {column.max_length}",
                    value,
                )
            )
        for bound, sign, word in ((column.min, "<", "before"), (column.max, ">", "after")):
            if bound is not None:
                rules.append(
                    _RowRule(
                        name,
                        f"with {name} {word} {bound}",
                        f"{quoted} {sign} DATE {literal(bound.isoformat())}",
                        value,
                    )
                )
    if plan.complete:
        for check in plan.schema.checks:
            used = [
                c.name for c in plan.schema.data_columns if re.search(rf"\b{c.name}\b", check.sql)
            ]
            shown = " || ', ' || ".join(
                f"{literal(c + '=')} || coalesce(CAST({quote(c)} AS VARCHAR), 'NULL')" for c in used
            )
            rules.append(
                _RowRule(None, f"breaking '{check.name}'", f"NOT ({check.sql})", shown or "NULL")
            )
    return rules


def _shown(value: str) -> str:
    """SQL of an example value cut to EXAMPLE_CHARS characters (a long string says so)."""
    return (
        f"CASE WHEN length({value}) > {EXAMPLE_CHARS} "
        f"THEN left({value}, {EXAMPLE_CHARS}) || '...' ELSE {value} END"
    )


def _examples(found: Any) -> tuple[Example, ...]:
    return tuple(Example(int(e["row"]), e["value"]) for e in found or [])


def row_problems(
    con: duckdb.DuckDBPyConnection, plan: TablePlan, metadata: Mapping[str, Any]
) -> list[Problem]:
    """Count, in one scan, the rows breaking each rule of the table; a few of each as examples.

    The examples are looked for in a second scan, only for the rules some row breaks: a table
    that conforms is read once.
    """
    rules = _row_rules(plan, metadata)
    counts = ["count(*)"] + [f"count(*) FILTER (WHERE {rule.condition})" for rule in rules]
    row = con.execute(f"SELECT {', '.join(counts)} FROM {quote(plan.view)}").fetchone()
    total, *bad_rows = row if row is not None else (0,) * (len(rules) + 1)
    broken = [index for index, bad in enumerate(bad_rows) if bad]
    found: dict[int, Any] = {}
    if broken:
        parts = [
            f"min_by({{'row': {quote(ROW)}, 'value': {_shown(rules[i].value)}}}, {quote(ROW)}, "
            f"{EXAMPLE_ROWS}) FILTER (WHERE {rules[i].condition})"
            for i in broken
        ]
        examples = con.execute(f"SELECT {', '.join(parts)} FROM {quote(plan.view)}").fetchone()
        found = dict(zip(broken, examples or (), strict=False))
    problems = []
    if total < plan.schema.min_rows:
        problems.append(
            Problem(
                plan.name,
                None,
                f"{total:,} row(s), the registry needs at least {plan.schema.min_rows:,}",
            )
        )
    for index in broken:
        rule, bad = rules[index], bad_rows[index]
        problems.append(
            Problem(
                plan.name,
                rule.column,
                f"{bad:,} row(s) {rule.message}",
                rule.found,
                rule.expected,
                bad,
                _examples(found.get(index)),
            )
        )
    return problems + _duplicate_keys(con, plan)


def _duplicate_keys(con: duckdb.DuckDBPyConnection, plan: TablePlan) -> list[Problem]:
    keys = plan.schema.primary_key
    if not all(k in plan.columns for k in keys):
        return []
    grouped = ", ".join(quote(k) for k in keys)
    counted = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {quote(plan.view)} GROUP BY {grouped} "
        "HAVING count(*) > 1)"
    ).fetchone()
    if not counted or not counted[0]:
        return []
    shown = " || ', ' || ".join(f"coalesce(CAST({quote(k)} AS VARCHAR), 'NULL')" for k in keys)
    sql = (
        f"SELECT count(*), min_by({{'row': first_row, 'value': {_shown('key')} || ' (rows ' || rows || ')'}}, "
        f"first_row, {EXAMPLE_ROWS}) FROM (SELECT min({quote(ROW)}) AS first_row, {shown} AS key, "
        f"array_to_string(list({quote(ROW)} ORDER BY {quote(ROW)})[1:{EXAMPLE_ROWS}], ', ') AS rows "
        f"FROM {quote(plan.view)} GROUP BY {grouped} HAVING count(*) > 1)"
    )
    row = con.execute(sql).fetchone()
    if not row or not row[0]:
        return []
    message = f"{row[0]:,} duplicated primary key(s) ({', '.join(keys)})"
    return [Problem(plan.name, None, message, rows=row[0], examples=_examples(row[1]))]


def foreign_key_problems(
    con: duckdb.DuckDBPyConnection, plans: Mapping[str, TablePlan], registry: SchemaRegistry
) -> list[Problem]:
    """Rows whose foreign keys point at nothing, among the tables given."""
    problems = []
    for name, plan in plans.items():
        for column, target in registry.table(name).foreign_keys.items():
            parent_table, parent_column = target.split(".")
            parent = plans.get(parent_table)
            if parent is None or column not in plan.columns or parent_column not in parent.columns:
                continue
            shown = _shown(f"CAST(c.{quote(column)} AS VARCHAR)")
            example = f"{{'row': c.{quote(ROW)}, 'value': {shown}}}"
            sql = (
                f"SELECT count(*), min_by({example}, c.{quote(ROW)}, {EXAMPLE_ROWS}) "
                f"FROM {quote(plan.view)} AS c WHERE c.{quote(column)} IS NOT NULL AND NOT EXISTS ("
                f"SELECT 1 FROM {quote(parent.view)} AS p "
                f"WHERE p.{quote(parent_column)} = c.{quote(column)})"
            )
            row = con.execute(sql).fetchone()
            if row and row[0]:
                problems.append(
                    Problem(
                        name,
                        column,
                        f"{row[0]:,} row(s) whose {column} is not in {target}",
                        rows=row[0],
                        examples=_examples(row[1]),
                    )
                )
    return problems


def metadata_sql(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Each metadata column's pack value as a typed SQL constant."""
    from appliance.packs.result_pack import format_timestamp

    return {
        "model_version": f"{literal(metadata['model_version'])}::VARCHAR",
        "generated_at": f"{literal(format_timestamp(metadata['generated_at']))}::TIMESTAMPTZ",
        "source": f"{literal(metadata['source'])}::VARCHAR",
        "dataset_id": f"{literal(metadata['dataset_id'])}::VARCHAR",
    }


def write_conformed(
    con: duckdb.DuckDBPyConnection, plan: TablePlan, target: str, metadata: Mapping[str, Any]
) -> None:
    """Write the conformed table as the node takes it: registry order, sorted, ZSTD.

    The metadata columns hold the pack's values (a table that carried them was checked to hold
    the same). The query has the shape `mlws demo` writes with, so the same rows give the same
    bytes whichever way they came in.
    """
    constants = metadata_sql(metadata)
    converted = ", ".join(
        f"{planned.written(quote(planned.source))} AS {quote(name)}"
        for name, planned in plan.columns.items()
        if name not in METADATA_COLUMNS
    )
    columns = [
        constants[c.name] + f" AS {quote(c.name)}" if c.name in METADATA_COLUMNS else quote(c.name)
        for c in plan.schema.columns
    ]
    order = ", ".join(quote(c) for c in plan.schema.sort_key)
    # Materialised first, so that DuckDB knows from the data which columns hold no null and
    # writes them as REQUIRED, as it does for `mlws demo`, whatever the conversion was.
    converted_table = quote(f"mlws_written_{plan.name}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {converted_table} AS SELECT {converted} "
        f"FROM {quote(plan.staged.relation)}"
    )
    con.execute(
        f"COPY (SELECT {', '.join(columns)} FROM (SELECT * FROM {converted_table} ORDER BY {order})) "
        f"TO {literal(target)} (FORMAT parquet, COMPRESSION zstd)"
    )
    con.execute(f"DROP TABLE {converted_table}")
