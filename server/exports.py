"""Exports of a version's gold tables as CSV or Parquet, streamed by DuckDB through a named pipe.

An export opens its own in-memory DuckDB, attaches the version's database read-only by its
folder (never through `current`, so a switch of the served version mid-export changes nothing:
the attached file stays open and versions are immutable), then locks the instance down to the
one pipe it writes. `COPY (query) TO pipe` writes the whole file as DuckDB makes it and this
process reads it back in chunks: memory stays bounded (DuckDB's own buffers and one chunk), no
byte of the export lands on disk, and the first byte leaves at once. docs/performance.md
("Exports") has the measurements that chose this over a temporary file and over Python rows.

Every value of a filter reaches DuckDB as a prepared parameter; the only names in the SQL are
the registry's table and column names and our own paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from appliance.data import store_layout
from appliance.data.run_layout import EXPORT_PIPE_PREFIX
from appliance.errors import NodeFault
from appliance.faults import node_fault, os_fault
from appliance.packs.schema_registry import load_registry
from appliance.packs.table_checks import literal, quote

EXPORT_PATH = "/api/v1/export"  # GET {EXPORT_PATH}/<table>.<format>
ATTACHED = "v"  # the name of the exported version's database in the export's DuckDB
EXPORT_MEMORY = "256MB"  # a streaming COPY needs little; the limit bounds a worker's share
CHUNK_BYTES = 1 << 20  # what one read of the pipe returns at most (and the pipe's buffer)
MAX_ITEMS = 100
DAMAGE_HINT = "`appliance support-bundle` checks the files of every version against their SHA-256"
EXPORT_REVISION = 1  # raise it when the export's bytes change for the same rows (the ETag has it)
ITEM_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILTER_LENGTH = 64
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, Linux; named here for Pythons whose fcntl lacks it
ITEMS_PARAMETER, SCOPE_PARAMETER = "items", "scope_items"
LOW_ITEM, HIGH_ITEM = "low_item", "high_item"
# Timestamps in CSV as RFC 3339 in UTC, as the pack's manifest writes them (format_timestamp).
RFC3339_SECONDS, RFC3339_MICROSECONDS = "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class ExportFormat:
    """One file format an export can be written in."""

    suffix: str
    media_type: str
    copy_options: str


CSV = ExportFormat(
    "csv",
    "text/csv; header=present",  # Litestar adds "; charset=utf-8" to text types
    # RFC 4180: comma, double quotes doubled inside quoted fields, CRLF, a header row.
    "FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NEW_LINE '\r\n', "
    "DATEFORMAT '%Y-%m-%d', USE_TMP_FILE false",
)
PARQUET = ExportFormat(
    "parquet", "application/vnd.apache.parquet", "FORMAT parquet, USE_TMP_FILE false"
)
FORMATS = {f.suffix: f for f in (CSV, PARQUET)}


@dataclass(frozen=True)
class ExportTable:
    """A gold table as exports see it: which filters it takes, and how."""

    name: str
    dated: bool  # has a `date` column: `from` and `to` apply
    own_scope: bool  # has its own category and site columns (else: its items' in dim_item)

    @property
    def filters(self) -> tuple[str, ...]:
        """The query parameters that filter this table."""
        return ("item", "category", "site", *(("from", "to") if self.dated else ()))


def export_tables() -> dict[str, ExportTable]:
    """Every gold table of the schema registry, in registry order."""
    tables = {}
    for name, schema in load_registry().tables.items():
        columns = set(schema.column_names)
        tables[name] = ExportTable(name, "date" in columns, {"category", "site"} <= columns)
    return tables


EXPORT_TABLES = export_tables()
ITEM_TABLE = "dim_item"  # where the category and site of an item are


@dataclass(frozen=True)
class ExportFilter:
    """What rows an export keeps, normalized: two spellings of one filter compare equal."""

    items: tuple[str, ...] = ()
    category: str | None = None
    site: str | None = None
    start: date | None = None
    end: date | None = None

    def key(self) -> dict[str, Any]:
        """The filter as plain data, for the ETag."""
        return {
            "item": list(self.items),
            "category": self.category,
            "site": self.site,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


@dataclass(frozen=True)
class ExportRequest:
    """One export: a table of a version, in a format, filtered."""

    vid: str
    table: ExportTable
    format: ExportFormat
    filter: ExportFilter

    def etag(self) -> str:
        """A strong ETag: the (immutable) version, the table, the format and the filter.

        The writer too (EXPORT_REVISION and DuckDB's version): the same rows written by another
        release may differ by a byte, and a strong ETag promises the same bytes.
        """
        key = json.dumps(
            [
                EXPORT_REVISION,
                duckdb.__version__,
                self.table.name,
                self.format.suffix,
                self.filter.key(),
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
        return f'"{self.vid}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}"'

    def file_name(self, dataset_id: str) -> str:
        """The download's name: dataset, version, table, then the filters in a fixed order."""
        parts = [dataset_id, self.vid, self.table.name]
        chosen = self.filter
        if len(chosen.items) == 1:
            parts.append(f"item-{chosen.items[0]}")
        elif chosen.items:
            parts.append(f"items-{len(chosen.items)}")
        for label, value in (("category", chosen.category), ("site", chosen.site)):
            if value is not None:
                parts.append(f"{label}-{value}")
        for label, day in (("from", chosen.start), ("to", chosen.end)):
            if day is not None:
                parts.append(f"{label}-{day.isoformat()}")
        safe = [NAME_UNSAFE.sub("-", part).strip("-") or "-" for part in parts]
        return "_".join(safe)[:200] + "." + self.format.suffix

    def content_disposition(self, dataset_id: str) -> str:
        """The Content-Disposition header: an attachment with the file name (plain ASCII)."""
        return f'attachment; filename="{self.file_name(dataset_id)}"'


class ExportFailed(Exception):
    """DuckDB stopped writing an export part-way (the stream is cut off, never passed as whole).

    `reason` is the node fault's (disk-full, io-error, damaged, ...): the request was valid.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def database_of(versions_dir: Path, vid: str) -> Path:
    """The query-ready database of version `vid`."""
    return versions_dir / vid / store_layout.VERSION_DATABASE


def select_list(
    con: duckdb.DuckDBPyConnection, table: ExportTable, export_format: ExportFormat
) -> str:
    """The columns of the table as stored, timestamps as RFC 3339 text in a CSV."""
    described = con.execute(f"DESCRIBE {ATTACHED}.{quote(table.name)}").fetchall()
    columns = []
    for name, kind, *_ in described:
        column = quote(name)
        if export_format is CSV and str(kind).startswith("TIMESTAMP"):
            columns.append(
                f"CASE WHEN microsecond({column}) % 1000000 = 0 "
                f"THEN strftime({column}, {literal(RFC3339_SECONDS)}) "
                f"ELSE strftime({column}, {literal(RFC3339_MICROSECONDS)}) END AS {column}"
            )
        else:
            columns.append(column)
    return ", ".join(columns)


def filter_sql(request: ExportRequest) -> tuple[list[str], dict[str, Any]]:
    """The WHERE conditions of the export and their parameters (items of a scope come later)."""
    chosen, table = request.filter, request.table
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if chosen.items:
        # The bounds let DuckDB skip the row groups outside them (tables are sorted by item).
        conditions.append(f"item_id BETWEEN ${LOW_ITEM} AND ${HIGH_ITEM}")
        conditions.append(f"list_contains(${ITEMS_PARAMETER}, item_id)")
        params[ITEMS_PARAMETER] = list(chosen.items)
        params.update(item_bounds(chosen.items))
    if chosen.category is not None or chosen.site is not None:
        if table.own_scope:
            for column, value in (("category", chosen.category), ("site", chosen.site)):
                if value is not None:
                    conditions.append(f"{column} = ${column}")
                    params[column] = value
        else:
            # The items of that category and site, as a list: a filter on each row keeps the
            # table's order (a join does not), and DuckDB checks a constant list quickly.
            # Its bounds (filled in with the list) let DuckDB skip row groups, as for items.
            if not chosen.items:
                conditions.append(f"item_id BETWEEN ${LOW_ITEM} AND ${HIGH_ITEM}")
            conditions.append(f"list_contains(${SCOPE_PARAMETER}, item_id)")
    if chosen.start is not None:
        conditions.append('"date" >= $start')
        params["start"] = chosen.start
    if chosen.end is not None:
        conditions.append('"date" <= $end')
        params["end"] = chosen.end
    return conditions, params


def item_bounds(items: Iterable[str]) -> dict[str, str | None]:
    """The lowest and highest item id of a list, as the BETWEEN parameters (None: no rows)."""
    ordered = sorted(items)
    return {LOW_ITEM: ordered[0] if ordered else None, HIGH_ITEM: ordered[-1] if ordered else None}


def scope_items(con: duckdb.DuckDBPyConnection, chosen: ExportFilter) -> list[str]:
    """The items of the filter's category and site (and its items, if any), from dim_item."""
    conditions = ["(CAST($category AS VARCHAR) IS NULL OR category = $category)",
                  "(CAST($site AS VARCHAR) IS NULL OR site = $site)"]  # fmt: skip
    params: dict[str, Any] = {"category": chosen.category, "site": chosen.site}
    if chosen.items:
        conditions.append(f"list_contains(${ITEMS_PARAMETER}, item_id)")
        params[ITEMS_PARAMETER] = list(chosen.items)
    row = con.execute(
        f"SELECT coalesce(list(item_id ORDER BY item_id), []) FROM {ATTACHED}.{ITEM_TABLE} "
        f"WHERE {' AND '.join(conditions)}",
        params,
    ).fetchone()
    return list(row[0]) if row else []


class ExportStream:
    """One export running: DuckDB's COPY writes into a named pipe that this object reads.

    `open` attaches the version and makes the pipe (NodeFault if the node cannot), `start`
    runs the COPY in a thread, `read` returns the next chunk (b"" at the end; ExportFailed if
    DuckDB stopped part-way), `close` stops it all, whatever state it is in.
    """

    def __init__(self, request: ExportRequest, database: Path, folder: Path) -> None:
        self.request = request
        self.database = database
        self.pipe = folder / f"{EXPORT_PIPE_PREFIX}{os.urandom(8).hex()}.{request.format.suffix}"
        self.folder = folder
        self.rows: int | None = None
        self.bytes = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._reader: int | None = None
        self._keep_open: int | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Attach the version read-only and make the pipe; NodeFault when the node fails."""
        try:
            con = duckdb.connect(
                ":memory:",
                config={
                    "threads": 1,  # one core per export, and the same bytes every time (ETag)
                    "memory_limit": EXPORT_MEMORY,
                    "temp_directory": "",  # never spill to disk: nothing here needs to
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                },
            )
            self._con = con
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"ATTACH {literal(str(self.database))} AS {ATTACHED} (READ_ONLY)")
            con.execute("SET allowed_paths = $paths", {"paths": [str(self.pipe)]})
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            self.close()
            raise self.fault(exc, f"opening data version {self.request.vid} for an export") from exc
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.mkfifo(self.pipe, 0o600)
            # Ours first, read end then a write end of our own: opening either alone would
            # block, and the second keeps the pipe from reading as ended before DuckDB opens it.
            self._reader = os.open(self.pipe, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._keep_open = os.open(self.pipe, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.set_blocking(self._reader, True)
            with contextlib.suppress(OSError):  # a bigger buffer: fewer, larger reads
                fcntl.fcntl(self._reader, F_SETPIPE_SZ, CHUNK_BYTES)
        except OSError as exc:
            self.close()
            raise os_fault(exc, "making the pipe of an export in the run folder") from exc

    def start(self) -> None:
        """Run the COPY in a thread of its own (it blocks while the pipe is full)."""
        con = self._con
        if con is None:
            msg = "open the export before starting it"
            raise RuntimeError(msg)
        conditions, params = filter_sql(self.request)
        try:
            if SCOPE_PARAMETER in " ".join(conditions):
                scope = scope_items(con, self.request.filter)
                params[SCOPE_PARAMETER] = scope
                params.update(item_bounds(scope))
            columns = select_list(con, self.request.table, self.request.format)
        except duckdb.Error as exc:
            # The version's database answered a catalog or read error before the COPY began.
            raise self.fault(exc, f"reading data version {self.request.vid} for an export") from exc
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = (
            f"COPY (SELECT {columns} FROM {ATTACHED}.{quote(self.request.table.name)}{where}) "
            f"TO {literal(str(self.pipe))} ({self.request.format.copy_options})"
        )
        self._thread = threading.Thread(
            target=self._copy, args=(con, sql, params), name="export", daemon=True
        )
        self._thread.start()

    def fault(self, exc: BaseException, doing: str) -> NodeFault:
        """What DuckDB's error says of the node, on one line and without the node's paths.

        Every value of the request was checked before DuckDB saw it, so an error of DuckDB is
        the node's (its disk, its memory, or a version's database it cannot read as expected).
        """
        fault = node_fault(exc, doing)
        if fault is not None:
            reason, text = fault.reason, str(fault)
        else:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = "damaged"
            text = f"{doing} failed ({detail}); its files may be damaged: {DAMAGE_HINT}"
        for path, name in (
            (self.pipe, "the export's pipe"),
            (self.database.parent, self.request.vid),
        ):
            text = text.replace(str(path), name)
        return NodeFault(reason, " ".join(text.split()))

    def _copy(self, con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> None:
        try:
            row = con.execute(sql, params).fetchone()
            self.rows = int(row[0]) if row else 0
        except BaseException as exc:  # noqa: BLE001 (handed to the reader, which raises it)
            self._error = exc
        finally:
            with self._lock:
                if self._keep_open is not None:
                    os.close(self._keep_open)  # DuckDB closed its end: the reader sees the end
                    self._keep_open = None

    def read(self) -> bytes:
        """The next chunk of the file, b"" once it is whole; ExportFailed if DuckDB stopped early."""
        reader = self._reader
        if reader is None:
            return b""
        parts: list[bytes] = []
        size = 0
        while size < CHUNK_BYTES:
            part = os.read(reader, CHUNK_BYTES - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
        if size == 0:
            if self._thread is not None:
                self._thread.join()  # the end of the pipe: DuckDB has finished, or failed
            if self._error is not None:
                doing = (
                    f"the export of {self.request.table.name} of data version {self.request.vid}"
                )
                fault = self.fault(self._error, doing)
                raise ExportFailed(fault.reason, str(fault)) from self._error
        self.bytes += size
        return b"".join(parts)

    def close(self) -> None:
        """Stop the COPY if it runs, wait for it, and remove the pipe; closing twice is fine.

        The pipe is drained until DuckDB lets go of it rather than closed under it: DuckDB
        blocks in opening the pipe until it has a reader, and in writing while it is full.
        """
        thread, self._thread = self._thread, None
        con, self._con = self._con, None
        if thread is not None and self._reader is not None:
            while True:
                if con is not None:
                    con.interrupt()  # at its next chunk; again each time, in case it was early
                if not os.read(self._reader, CHUNK_BYTES):
                    break
            thread.join()
        with self._lock:
            if self._keep_open is not None:
                os.close(self._keep_open)
                self._keep_open = None
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        if con is not None:
            con.close()
        self.pipe.unlink(missing_ok=True)


__all__ = [
    "CSV",
    "EXPORT_PATH",
    "EXPORT_TABLES",
    "FORMATS",
    "MAX_FILTER_LENGTH",
    "MAX_ITEMS",
    "PARQUET",
    "ExportFailed",
    "ExportFilter",
    "ExportRequest",
    "ExportStream",
    "ExportTable",
]
