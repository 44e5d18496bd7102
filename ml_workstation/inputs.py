"""The inputs an ML pipeline hands `mlws pack`, found and loaded into DuckDB as they are.

A pipeline writes its tables as a folder of `<table>.parquet` or `<table>.csv` files (pandas with
either engine, polars, DuckDB, or any Parquet writer), as one DuckDB database file holding tables
named as the registry's, or hands them in memory (pyarrow Tables, pandas or polars DataFrames).
Each is staged in DuckDB with its row number beside it, so that every later check can name a row
by its position (0 for the first row, as pandas' iloc counts): a Parquet file is read in place
(its file_row_number), anything else is loaded into a temporary table in input order (its rowid).
Nothing here converts a value: that is conform.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import ConfigError, SchemaError, UnreadableParquet
from appliance.faults import node_fault
from appliance.packs import pack_layout as layout
from appliance.packs.parquet_footer import FileColumn, read_footer
from appliance.packs.schema_registry import SchemaRegistry
from appliance.packs.table_checks import literal, quote

if TYPE_CHECKING:
    import duckdb

CSV_SUFFIX = ".csv"
TABLE_FILE_SUFFIXES = (layout.TABLE_SUFFIX, CSV_SUFFIX)
# Every DuckDB database file carries these bytes at this offset (its storage header).
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8
SOURCE_DATABASE = "mlws_source"
ROW_NUMBER = "__mlws_file_row"  # a Parquet input's row number, beside its columns

PARQUET, CSV, DUCKDB, IN_MEMORY = "Parquet", "CSV", "DuckDB", "in-memory"


@dataclass(frozen=True)
class TableInput:
    """Where one table comes from: a file, a table of a DuckDB database, or an object in memory."""

    name: str
    kind: str  # PARQUET, CSV, DUCKDB or IN_MEMORY
    path: Path | None = None
    data: Any = None  # IN_MEMORY: a pyarrow Table

    @property
    def where(self) -> str:
        """The input for a message."""
        if self.kind == DUCKDB:
            return f"{self.path} (table {self.name})"
        return str(self.path) if self.path else f"the {self.name} table given"


@dataclass(frozen=True)
class StagedTable:
    """One input table loaded into DuckDB: its relation, its columns and what the file says of them."""

    source: TableInput
    relation: str  # a temporary DuckDB table or view holding the rows in input order
    row: str  # the relation's column numbering the rows from 0, in input order
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type) in input order
    footer: tuple[FileColumn, ...] | None = (
        None  # PARQUET: the file's columns as the node reads them
    )
    text: bool = False  # CSV: every column is text, typed by the registry
    index_columns: tuple[str, ...] = ()  # columns pandas wrote for its index

    @property
    def column_names(self) -> tuple[str, ...]:
        """The input's column names, in input order."""
        return tuple(name for name, _ in self.columns)


def _is_duckdb_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
    except OSError as exc:
        msg = f"{path}: cannot read the file ({exc.strerror})"
        raise ConfigError(msg) from exc
    return head[DUCKDB_MAGIC_OFFSET:] == DUCKDB_MAGIC


def find_inputs(source: Path, registry: SchemaRegistry) -> dict[str, TableInput]:
    """The registry tables `source` holds (a folder of table files, or a DuckDB database file)."""
    if source.is_dir():
        tables = _folder_inputs(source, registry)
    elif source.is_file():
        if not _is_duckdb_file(source):
            msg = (
                f"{source} is a file, but not a DuckDB database: give a folder of "
                f"<table>.parquet or <table>.csv files, or a DuckDB database file"
            )
            raise ConfigError(msg)
        tables = _database_inputs(source, registry)
    else:
        msg = f"{source} is not a folder of <table>.parquet or <table>.csv files, nor a DuckDB database file"
        raise ConfigError(msg)
    return check_table_names(str(source), tables, registry)


def check_table_names(
    where: str, tables: Mapping[str, TableInput], registry: SchemaRegistry
) -> dict[str, TableInput]:
    """The tables in registry order; refuse names the registry lacks and required ones absent."""
    unknown = sorted(set(tables) - set(registry.tables))
    if unknown:
        msg = f"{where}: {', '.join(unknown)} not in the schema registry ({', '.join(registry.tables)})"
        raise SchemaError(msg)
    absent = [name for name in registry.required_tables if name not in tables]
    if absent:
        msg = f"{where}: required table(s) missing: {', '.join(absent)}"
        raise SchemaError(msg)
    return {name: tables[name] for name in registry.tables if name in tables}


def _folder_inputs(folder: Path, registry: SchemaRegistry) -> dict[str, TableInput]:
    try:
        # glob() would take an unreadable folder for an empty one.
        entries = sorted(folder.iterdir())
    except OSError as exc:
        msg = f"{folder}: cannot read the folder ({exc.strerror})"
        raise ConfigError(msg) from exc
    files = [p for p in entries if p.suffix in TABLE_FILE_SUFFIXES]
    if not files:
        msg = f"{folder}: no table files (<table>.parquet or <table>.csv, one per table of {', '.join(registry.tables)})"
        raise SchemaError(msg)
    tables: dict[str, TableInput] = {}
    for path in files:
        if path.stem in tables:
            msg = f"{folder}: table {path.stem} is given twice ({path.stem}.parquet and {path.stem}.csv); keep one"
            raise SchemaError(msg)
        kind = PARQUET if path.suffix == layout.TABLE_SUFFIX else CSV
        tables[path.stem] = TableInput(path.stem, kind, path)
    return tables


def _database_inputs(path: Path, registry: SchemaRegistry) -> dict[str, TableInput]:
    """The registry's tables (or views) in the database's main schema; others are left alone."""
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            names = {
                row[0]
                for row in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
                ).fetchall()
            }
    except duckdb.Error as exc:
        msg = f"{path}: not a readable DuckDB database ({str(exc).splitlines()[0]})"
        raise SchemaError(msg) from exc
    return {name: TableInput(name, DUCKDB, path) for name in names if name in registry.tables}


def _relation_of(con: duckdb.DuckDBPyConnection, table: TableInput, handle: str) -> str:
    """A SQL relation reading `table`'s rows in input order."""
    if table.kind == CSV:
        # Every column as text: the registry types them, nothing is guessed from the values.
        return (
            f"read_csv({literal(str(table.path))}, header = true, all_varchar = true, "
            "delim = ',', quote = '\"', escape = '\"', strict_mode = true)"
        )
    if table.kind == DUCKDB:
        return f"{quote(SOURCE_DATABASE)}.main.{quote(table.name)}"
    con.register(handle, table.data)
    return quote(handle)


def _pandas_index(metadata: bytes | str | None) -> tuple[str, ...]:
    """The columns pandas' metadata (as pyarrow and fastparquet write it) says hold its index."""
    if not metadata:
        return ()
    try:
        index = json.loads(metadata).get("index_columns", [])
    except (ValueError, AttributeError):
        return ()
    # A plain range index is stored as a description, not as a column.
    return tuple(name for name in index if isinstance(name, str))


def _index_columns(con: duckdb.DuckDBPyConnection, table: TableInput) -> tuple[str, ...]:
    if table.kind == PARQUET:
        rows = con.execute(
            "SELECT value FROM parquet_kv_metadata(?) WHERE key = 'pandas'", [str(table.path)]
        ).fetchall()
        return _pandas_index(rows[0][0] if rows else None)
    if table.kind == IN_MEMORY:
        metadata = getattr(getattr(table.data, "schema", None), "metadata", None) or {}
        return _pandas_index(metadata.get(b"pandas"))
    return ()


def _unreadable(table: TableInput, exc: Exception) -> SchemaError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if table.path is not None:
        detail = detail.replace(str(table.path), table.path.name)
    msg = f"{table.where}: not a readable {table.kind} table ({detail})"
    return SchemaError(msg)


def stage_tables(
    con: duckdb.DuckDBPyConnection, tables: Mapping[str, TableInput]
) -> dict[str, StagedTable]:
    """Load every input table into a temporary DuckDB table, in its row order."""
    import duckdb

    databases = {t.path for t in tables.values() if t.kind == DUCKDB}
    for database in databases:
        try:
            con.execute(f"ATTACH {literal(str(database))} AS {quote(SOURCE_DATABASE)} (READ_ONLY)")
        except duckdb.Error as exc:
            msg = f"{database}: not a readable DuckDB database ({str(exc).splitlines()[0]})"
            raise SchemaError(msg) from exc
    staged = {}
    try:
        for name, table in tables.items():
            staged[name] = _stage(con, table)
    finally:
        if databases:
            con.execute(f"DETACH {quote(SOURCE_DATABASE)}")
    return staged


def _stage(con: duckdb.DuckDBPyConnection, table: TableInput) -> StagedTable:
    import duckdb

    footer = None
    if table.kind == PARQUET and table.path is not None:
        try:
            footer = read_footer(table.path).columns
        except UnreadableParquet as exc:
            msg = f"{table.path}: not a readable Parquet file ({exc})"
            raise SchemaError(msg) from exc
    if table.kind == CSV and table.path is not None and table.path.stat().st_size == 0:
        msg = (
            f"{table.path}: not a readable CSV table (the file is empty; it needs its header line)"
        )
        raise SchemaError(msg)
    relation = f"mlws_input_{table.name}"
    handle = f"mlws_given_{table.name}"
    try:
        if table.kind == PARQUET:
            # Read in place: a file that is already right is never loaded whole into memory.
            row = quote(ROW_NUMBER)
            con.execute(
                f"CREATE TEMP VIEW {quote(relation)} AS SELECT * EXCLUDE (file_row_number), "
                f"file_row_number AS {row} FROM read_parquet({literal(str(table.path))}, "
                "file_row_number = true)"
            )
        else:
            row = "rowid"
            source = _relation_of(con, table, handle)
            con.execute(f"CREATE TEMP TABLE {quote(relation)} AS SELECT * FROM {source}")
        columns = tuple(
            (str(name), str(kind))
            for name, kind, *_ in con.execute(f"DESCRIBE {quote(relation)}").fetchall()
            if name != ROW_NUMBER
        )
        index_columns = _index_columns(con, table)
    except duckdb.Error as exc:
        fault = node_fault(exc, f"reading {table.where}")
        if fault is not None:
            raise fault from exc
        raise _unreadable(table, exc) from exc
    finally:
        if table.kind == IN_MEMORY:
            con.unregister(handle)
    return StagedTable(table, relation, row, columns, footer, table.kind == CSV, index_columns)
