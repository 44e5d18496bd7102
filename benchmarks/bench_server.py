"""Field-scale API benchmark: our server against nginx, a bare Granian app, Datasette and ROAPI.

Serves the same demo data (`mlws demo`, 20,000 items x 730 days; `--scale N` makes N times the
items) in several ways and loads each server in turn, alone on the machine, with the same bounded
wrk run (threads, connections, duration, headers) on 127.0.0.1 only:

- ours: `appliance serve` over a data store made by `mlws pack` + `appliance import`, with its
  production defaults (JSON request logs, metrics, ETags, security headers: every answer checked
  before the load must carry its ETag, data version and security headers), except that the
  per-client rate limit is raised out of the way (wrk is one client address). A second row, "ours (viewer token)", runs the precomputed
  scenarios again with APPLIANCE_VIEWER_TOKEN_FILE set and wrk sending `Authorization: Bearer`;
  a request without the token must first be refused with 401;
- nginx, the limit anchor (Debian's nginx-light, /usr/sbin/nginx): our own answers' bytes,
  fetched from our server once per data version with `Accept-Encoding: gzip`, as static files
  (`<uri>.gz` for an answer our server sends gzip-compressed, `<uri>` for one it sends as is),
  from a generated nginx.conf in the work folder: 2 worker processes, sendfile, gzip_static
  (`always`, with gunzip, so a client without gzip gets the inflated bytes, as from ours),
  `default_type application/json`, an access log; nginx's own ETags for the 304 scenarios;
- granian, the framework floor: a bare ASGI app run by the venv's Granian with our server's
  interface settings (ASGI, HTTP/1, 2 workers, the same header timeout), answering every request
  with one stored answer (the probe item's timeseries, gzip-compressed when the client accepts
  it) and doing nothing else;
- Datasette 0.65 over an SQLite export of the same four tables, opened immutable (`-i`), with the
  indexes a careful user would add for these lookups;
- ROAPI 0.12 over the same Parquet files.

Scenarios (benchmarks/wrk/random_item.lua picks a random item per request):

- timeseries: the whole forecast series of one item (730 rows), ordered by date;
- timeseries (304): ours and nginx revalidated with If-None-Match for a sample of items whose
  ETags the harness fetched first (benchmarks/wrk/revalidate.lua), at the run's connections and
  at one: under a closed-loop load p50 is about connections / throughput, so one connection shows
  what the 304 path itself costs; n/a for a peer that sends no ETag;
- summary: the aggregated KPIs (global and per category, precomputed in fact_metrics);
- inventory: the projected stock rows of one item;
- range (60 days), ours: one item's forecast `?from=&to=` a window of 60 consecutive dates of
  the series, item and window drawn per request (benchmarks/wrk/random_range.lua);
- search, ours: `GET /api/v1/items?q=<item id>`, a random item per request;
- listing, ours: the first page of the largest category (`?category=...&limit=50`), and
  listing (cursor): the page after it, with the `next` token the harness took from the first.

Every row's throughput is also given as a multiple of nginx's in the same scenario ("x nginx"),
and for range, search and listing as a multiple of the same server's whole-timeseries rate
("x timeseries"); the goals table gives each goal's measured ratio and whether it is met.

Every request says `Accept-Encoding: gzip`, as browsers do (`--accept-encoding ''` to drop it);
each server answers as it does by default. Peers answer with the fastest honest query a user of
each would write, the same SQL for both: Datasette's ad-hoc SQL JSON API with a named parameter
(as fast as or faster than its table API, which also counts the matching rows); ROAPI's SQL
endpoint (as fast as its REST filters), with fact_forecast read in place from Parquet
(`use_memory_table=false`: the file is sorted by item, so row-group statistics skip all but one
or two groups, where ROAPI's default in-memory table scans all 14.6 M rows per lookup, about
half as fast) and the small tables in memory, ROAPI's default and the faster way for them.
Every server answers each scenario's request for the probe item once before its load, and a
wrong answer stops the run, so a misconfigured server cannot "win" with errors.

Setup (demo tables, SQLite export, peer venvs, the signed pack, our data store, the static copy
of our answers) is kept in a work folder per scale and reused by later runs; the pack is imported
again whenever the `appliance` package's source has changed, and the answers are fetched again
whenever the imported version or the `appliance` or `server` source has. nginx is skipped, with
a note, where it is not installed (`apt-get install nginx-light`). Progress goes to stderr;
stdout is the report, in Markdown.

    python benchmarks/bench_server.py [--scale 1] [--items 20000] [--days 730]
        [--connections 64] [--duration 15s] [--threads 2]
        [--only ours,nginx,granian,datasette,roapi] [--skip-setup]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import importlib.util
import json
import os
import random
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

BIN = Path(sys.executable).parent
WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
TABLES = ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")
SERVERS = ("ours", "nginx", "granian", "datasette", "roapi")
OURS_GUARDED = "ours (viewer token)"
OURS = ("ours", OURS_GUARDED)
NEED_OUR_ANSWERS = ("nginx", "granian")
PEER_REQUIREMENTS = {"datasette": "datasette>=0.65,<0.66", "roapi": "roapi>=0.12,<0.13"}
NGINX = Path("/usr/sbin/nginx")
WORKERS = 2  # each server's worker processes: one per core of the machine the anchor is from

TIMESERIES = "timeseries"
REVALIDATION = "timeseries (304)"
REVALIDATION_ALONE = "timeseries (304), 1 connection"
SUMMARY = "summary"
INVENTORY = "inventory"
RANGE_DAYS = 60
RANGE = f"range ({RANGE_DAYS} days)"
SEARCH = "search"
LISTING = "listing"
LISTING_CURSOR = "listing (cursor)"
SCENARIOS = (
    TIMESERIES,
    REVALIDATION,
    REVALIDATION_ALONE,
    SUMMARY,
    INVENTORY,
    RANGE,
    SEARCH,
    LISTING,
    LISTING_CURSOR,
)
PRECOMPUTED = (TIMESERIES, REVALIDATION, SUMMARY, INVENTORY)
TIMESERIES_PATH = "/api/v1/items/{item}/timeseries"
INVENTORY_PATH = "/api/v1/inventory/{item}"
SUMMARY_PATH = "/api/v1/forecasts/summary"
LISTING_LIMIT = 50

# The goals of issue 13: precomputed answers at half nginx's rate on the same bytes, with a p99
# bound; the query scenarios as a share of our own whole-timeseries rate in the same run.
NGINX_SHARE = 0.5
P99_LIMIT_MS = 10.0
SHARE_OF_TIMESERIES = {RANGE: 0.5, SEARCH: 0.25, LISTING: 0.25, LISTING_CURSOR: 0.25}
PEER_FACTORS = {"datasette": 5, "roapi": 2}
# What our answers carry with production defaults on; a fast path that drops them is caught.
PRODUCTION_HEADERS = ("etag", "x-data-version", "x-content-type-options", "content-security-policy")

BASE_ITEMS = 20_000
DATASET_ID = "demo-telecom-spares"
MODEL_VERSION = "demo-ensemble-1.0"
SOURCE = "ensemble"
OUR_RATE_LIMIT = 10_000_000
PROBE_ITEM = 42
QUIET_CPU_PERCENT = 10
ETAG_SAMPLE = 200
READY_POLL_SECONDS = 0.01
READY_DEADLINE_SECONDS = 300.0
STOP_GRACE_SECONDS = 10.0
SQLITE_BATCH_ROWS = 100_000
WARM_CHUNK_BYTES = 8 * 2**20
EXPORT_CONNECTIONS = 4

# The indexes a careful Datasette user adds for these queries: item lookups ordered by date,
# and the summary's filter on scope.
SQLITE_INDEXES = {
    "fact_forecast": ("item_id", "date"),
    "fact_inventory": ("item_id", "date"),
    "dim_item": ("item_id",),
    "fact_metrics": ("scope",),
}
# Tables ROAPI reads from their Parquet file on each query instead of loading them into memory.
ROAPI_READ_IN_PLACE = ("fact_forecast",)
SQLITE_TYPES = {"VARCHAR": "TEXT", "DATE": "TEXT", "DOUBLE": "REAL", "INTEGER": "INTEGER"}

# The same three queries for both peers; "{item}" is the item id put in by random_item.lua.
TIMESERIES_SQL = (
    "SELECT date, yhat, yhat_lower, yhat_upper, actual FROM fact_forecast "
    "WHERE item_id = {item} ORDER BY date"
)
INVENTORY_SQL = (
    "SELECT date, on_hand, reorder_point, safety_stock, days_of_cover, stockout_risk "
    "FROM fact_inventory WHERE item_id = {item} ORDER BY date"
)
SUMMARY_SQL = (
    "SELECT scope, category, metric, period, value FROM fact_metrics "
    "WHERE scope IN ('global', 'category') ORDER BY scope, category, metric"
)


class BenchmarkError(Exception):
    """A step of the benchmark failed; the message says which and why."""


@dataclass(frozen=True)
class Load:
    """One scenario as one server answers it: what wrk sends, and what one answer must hold."""

    script: str
    args: tuple[str, ...]
    method: str = "GET"
    path: str = ""
    body: str | None = None
    rows: int | None = None
    not_modified: bool = False
    connections: int | None = None
    window: tuple[str, str] | None = None
    note: str = ""

    def describe(self) -> str:
        """The request as a reader would write it, with {item} in place of the item id."""
        if self.body is None:
            request = f"{self.method} {urllib.parse.unquote_plus(self.path)}"
        else:
            request = f"{self.method} {self.path} body: {self.body}"
        return f"{request} {self.note}" if self.note else request


@dataclass
class Server:
    """A server under test: how to start it, when it is ready, and its scenarios."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    loads: dict[str, Load]
    data: list[Path]
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    header_note: str = ""
    etags: Path | None = None
    required_headers: tuple[str, ...] = ()
    config: Path | None = None

    def command(self) -> str:
        """The command line, as a shell would take it."""
        return shlex.join([f"{name}={value}" for name, value in self.env.items()] + self.argv)

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def log_name(self) -> str:
        """The server's name as a file name."""
        return re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-")


@dataclass
class Result:
    """One wrk run, as parsed from its --latency report."""

    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    socket_errors: dict[str, int]
    bad_status: int
    others_cpu: float = 0.0

    def errors(self) -> str:
        """Socket errors and non-2xx/3xx answers, or 0."""
        parts = [f"{n} {kind}" for kind, n in self.socket_errors.items() if n]
        if self.bad_status:
            parts.append(f"{self.bad_status} non-2xx/3xx")
        return ", ".join(parts) or "0"


@dataclass
class Layout:
    """Where setup puts each thing, under the work folder and the peers folder."""

    work: Path
    peers: Path
    items: int
    days: int

    @property
    def scale(self) -> Path:
        return self.work / f"demo-{self.items}x{self.days}"

    @property
    def tables(self) -> Path:
        return self.scale / "tables"

    @property
    def sqlite(self) -> Path:
        return self.scale / "demo.db"

    @property
    def ours(self) -> Path:
        return self.scale / "ours"

    @property
    def pack(self) -> Path:
        return self.ours / "demo.pack"

    @property
    def ours_data(self) -> Path:
        return self.ours / "data"

    @property
    def viewer_token(self) -> Path:
        return self.ours / "viewer.token"

    @property
    def dates(self) -> Path:
        return self.scale / "dates.txt"

    @property
    def answers(self) -> Path:
        return self.scale / "answers"

    @property
    def static_root(self) -> Path:
        return self.answers / "root"

    @property
    def nginx(self) -> Path:
        return self.scale / "nginx"

    @property
    def floor(self) -> Path:
        return self.scale / "floor"

    @property
    def logs(self) -> Path:
        return self.scale / "logs"

    def peer_bin(self, name: str) -> Path:
        return self.peers / name / "bin" / name


def progress(message: str) -> None:
    """Progress line on stderr, so stdout stays the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(argv: list[str]) -> str:
    """Run a command to completion; its stdout. Raises with its stderr on failure."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr.strip()}"
        raise BenchmarkError(msg)
    return done.stdout


def item_id(number: int) -> str:
    """The id `mlws demo` gives item `number` (1-based)."""
    return f"IT-{number:07d}"


def seconds(duration: str) -> float:
    """Seconds in a wrk duration such as 15s, 2m or 1h."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", duration)
    if match is None:
        msg = f"not a duration: {duration!r} (use e.g. 15s, 2m)"
        raise BenchmarkError(msg)
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Setup ---------------------------------------------------------------------------------------


def make_tables(layout: Layout) -> None:
    """Write the demo tables with `mlws demo`, unless a previous run did."""
    if all((layout.tables / f"{name}.parquet").exists() for name in TABLES):
        progress(f"demo tables: reusing {layout.tables}")
        return
    progress(f"demo tables: mlws demo --items {layout.items} --days {layout.days} ...")
    started = time.perf_counter()
    run(
        [
            str(BIN / "mlws"),
            "demo",
            "--out",
            str(layout.tables),
            "--items",
            str(layout.items),
            "--days",
            str(layout.days),
        ]
    )
    progress(f"demo tables: done in {time.perf_counter() - started:.1f} s")


def export_sqlite(layout: Layout) -> None:
    """Copy the four tables into one SQLite file with Datasette's indexes, unless done before."""
    if layout.sqlite.exists():
        progress(f"SQLite export: reusing {layout.sqlite}")
        return
    import duckdb

    progress(f"SQLite export: {layout.sqlite} ...")
    started = time.perf_counter()
    partial = layout.sqlite.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = duckdb.connect()
    db = sqlite3.connect(partial)
    try:
        con.execute("SET TimeZone = 'UTC'")
        # A scratch file rebuilt from scratch on failure: no journal, no fsync while loading.
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        for name in TABLES:
            table_started = time.perf_counter()
            rows = copy_table(con, db, layout.tables / f"{name}.parquet", name)
            progress(
                f"SQLite export: {name}: {rows:,} rows in {time.perf_counter() - table_started:.1f} s"
            )
        for name, columns in SQLITE_INDEXES.items():
            index_started = time.perf_counter()
            db.execute(
                f'CREATE INDEX "{name}_by_{"_".join(columns)}" ON "{name}" ({", ".join(columns)})'
            )
            progress(
                f"SQLite export: index {name}({', '.join(columns)}) in {time.perf_counter() - index_started:.1f} s"
            )
        db.execute("ANALYZE")
        db.commit()
    finally:
        db.close()
        con.close()
    partial.replace(layout.sqlite)
    size = layout.sqlite.stat().st_size / 2**20
    progress(
        f"SQLite export: done in {time.perf_counter() - started:.1f} s ({size:,.0f} MiB, "
        "sqlite3 executemany from DuckDB record batches, indexes, ANALYZE)"
    )


def copy_table(
    con: duckdb.DuckDBPyConnection, db: sqlite3.Connection, parquet: Path, name: str
) -> int:
    """Copy one Parquet table into a new SQLite table, dates and timestamps as ISO text; rows."""
    relation = con.read_parquet(str(parquet))
    columns, selects = [], []
    for column, duckdb_type in zip(relation.columns, map(str, relation.types), strict=True):
        if duckdb_type.startswith("TIMESTAMP"):
            selects.append(f'strftime("{column}", \'%Y-%m-%dT%H:%M:%SZ\') AS "{column}"')
            sqlite_type = "TEXT"
        else:
            selects.append(f'"{column}"')
            sqlite_type = SQLITE_TYPES[duckdb_type]
        columns.append(f'"{column}" {sqlite_type}')
    # Table and column names come from the demo tables' schema, never from input.
    db.execute(f'CREATE TABLE "{name}" ({", ".join(columns)})')
    insert = f'INSERT INTO "{name}" VALUES ({", ".join("?" * len(columns))})'
    rows = 0
    for batch in relation.project(", ".join(selects)).to_arrow_reader(SQLITE_BATCH_ROWS):
        values = [column.to_pylist() for column in batch.columns]
        db.executemany(insert, zip(*values, strict=True))
        rows += batch.num_rows
    db.commit()
    return rows


def install_peer(layout: Layout, name: str) -> None:
    """Install a peer into its own venv with pip, unless a previous run did."""
    if layout.peer_bin(name).exists():
        progress(f"{name}: reusing {layout.peers / name}")
        return
    requirement = PEER_REQUIREMENTS[name]
    progress(f"{name}: pip install '{requirement}' into {layout.peers / name} ...")
    started = time.perf_counter()
    venv = layout.peers / name
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement])
    if not layout.peer_bin(name).exists():
        msg = f"{name}: pip installed {requirement} but {layout.peer_bin(name)} is missing"
        raise BenchmarkError(msg)
    progress(f"{name}: installed in {time.perf_counter() - started:.1f} s")


def serve_available() -> bool:
    """Whether this venv's `appliance` has the serve command yet."""
    done = subprocess.run(
        [str(BIN / "appliance"), "serve", "--help"], capture_output=True, check=False
    )
    return done.returncode == 0


def import_ours(layout: Layout) -> None:
    """Pack the demo tables once; import the pack again whenever the importer's code changed."""
    if not layout.pack.exists():
        pack_tables(layout)
    fingerprint = source_fingerprint("appliance")
    stamp = layout.ours / "data.importer"
    current = (layout.ours_data / "current").exists()
    if current and stamp.exists() and stamp.read_text() == fingerprint:
        progress(f"ours: reusing the data store {layout.ours_data}")
        return
    progress(f"ours: appliance import into {layout.ours_data} ...")
    started = time.perf_counter()
    shutil.rmtree(layout.ours_data, ignore_errors=True)
    run(
        [
            str(BIN / "appliance"),
            "import",
            str(layout.pack),
            "--data-dir",
            str(layout.ours_data),
            "--signers",
            str(layout.ours / "allowed_signers"),
        ]
    )
    stamp.write_text(fingerprint)
    progress(f"ours: import done in {time.perf_counter() - started:.1f} s")


def pack_tables(layout: Layout) -> None:
    """Sign the demo tables into a result pack with a new key, as the ML workstation does."""
    progress("ours: mlws keygen, mlws pack ...")
    started = time.perf_counter()
    shutil.rmtree(layout.ours, ignore_errors=True)
    layout.ours.mkdir(parents=True)
    key = layout.ours / "key"
    signers = run([str(BIN / "mlws"), "keygen", "--out", str(key), "--principal", "bench@mlws"])
    (layout.ours / "allowed_signers").write_text(signers)
    run(
        [
            str(BIN / "mlws"),
            "pack",
            str(layout.tables),
            "--key",
            str(key),
            "--dataset-id",
            DATASET_ID,
            "--model-version",
            MODEL_VERSION,
            "--source",
            SOURCE,
            "--out",
            str(layout.pack),
        ]
    )
    progress(f"ours: pack made in {time.perf_counter() - started:.1f} s")


def source_fingerprint(*packages: str) -> str:
    """A hash of the packages' source, found without importing them (one may be mid-edit)."""
    digest = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            msg = f"cannot find the {name} package"
            raise BenchmarkError(msg)
        package = Path(next(iter(spec.submodule_search_locations)))
        for source in sorted(package.rglob("*.py")):
            relative = f"{name}/{source.relative_to(package)}"
            digest.update(relative.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class DataFacts:
    """What the requests and their checks need to know about the demo tables."""

    forecast_rows: int
    inventory_rows: int
    dates: tuple[str, ...]
    window_rows: int
    category: str
    category_items: int

    @property
    def window(self) -> tuple[str, str]:
        """The probe's date range: the series' first RANGE_DAYS dates."""
        return self.dates[0], self.dates[RANGE_DAYS - 1]


def data_facts(layout: Layout) -> DataFacts:
    """The probe item's rows per table and date range, the series' dates, the largest category."""
    import duckdb

    forecast, inventory, items = (
        str(layout.tables / f"{name}.parquet")
        for name in ("fact_forecast", "fact_inventory", "dim_item")
    )
    probe = item_id(PROBE_ITEM)
    con = duckdb.connect()
    try:

        def count(sql: str, params: list[object]) -> int:
            row = con.execute(sql, params).fetchone()
            return int(row[0]) if row else 0

        dates = tuple(
            row[0]
            for row in con.execute(
                "SELECT DISTINCT strftime(date, '%Y-%m-%d') AS day FROM read_parquet(?) ORDER BY day",
                [forecast],
            ).fetchall()
        )
        if len(dates) < RANGE_DAYS:
            msg = f"the series has {len(dates)} dates; the range scenario needs {RANGE_DAYS}"
            raise BenchmarkError(msg)
        by_item = "SELECT count(*) FROM read_parquet(?) WHERE item_id = ?"
        largest = con.execute(
            "SELECT category, count(*) FROM read_parquet(?) GROUP BY category ORDER BY 2 DESC, 1 LIMIT 1",
            [items],
        ).fetchone()
        if largest is None or largest[1] <= LISTING_LIMIT:
            msg = f"no category has over {LISTING_LIMIT} items, as the cursor scenario needs: use more --items"
            raise BenchmarkError(msg)
        return DataFacts(
            forecast_rows=count(by_item, [forecast, probe]),
            inventory_rows=count(by_item, [inventory, probe]),
            dates=dates,
            window_rows=count(
                f"{by_item} AND date BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)",
                [forecast, probe, dates[0], dates[RANGE_DAYS - 1]],
            ),
            category=str(largest[0]),
            category_items=int(largest[1]),
        )
    finally:
        con.close()


def viewer_token(layout: Layout) -> str:
    """The viewer token of the second row of ours: made once, kept in a private file."""
    if not layout.viewer_token.exists():
        layout.viewer_token.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(layout.viewer_token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as token:
            token.write(secrets.token_urlsafe(32) + "\n")
    return layout.viewer_token.read_text().strip()


def answers_stamp(layout: Layout) -> str:
    """What the static copy of our answers depends on: the imported version and our source."""
    version = (layout.ours_data / "current").resolve()
    return f"{version} {version.stat().st_mtime_ns} {source_fingerprint('appliance', 'server')}\n"


def export_answers(layout: Layout, facts: DataFacts) -> None:
    """Copy every answer our server sends a gzip client into nginx's root, unless done already.

    The bytes are fetched from our server rather than read from the version's files, so they are
    certainly the ones it sends: a gzip-encoded answer becomes `<uri>.gz`, any other `<uri>`.
    """
    stamp = layout.answers / "stamp"
    if (
        layout.static_root.exists()
        and stamp.exists()
        and stamp.read_text() == answers_stamp(layout)
    ):
        progress(f"our answers: reusing {layout.static_root}")
        return
    paths = [SUMMARY_PATH] + [
        path.replace("{item}", item_id(number))
        for number in range(1, layout.items + 1)
        for path in (TIMESERIES_PATH, INVENTORY_PATH)
    ]
    progress(f"our answers: fetching {len(paths):,} answers into {layout.static_root} ...")
    started = time.perf_counter()
    partial = layout.answers / "root.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    server = dataclasses.replace(our_server(layout, facts), name="ours (exporting answers)")
    with running(server, layout.logs):
        size = fetch_answers(server, paths, partial)
    shutil.rmtree(layout.static_root, ignore_errors=True)
    partial.replace(layout.static_root)
    stamp.write_text(answers_stamp(layout))
    progress(
        f"our answers: {size / 2**20:,.0f} MiB in {time.perf_counter() - started:.1f} s "
        f"over {EXPORT_CONNECTIONS} connections"
    )


def static_file(root: Path, uri: str, *, gzipped: bool = True) -> Path:
    """Where nginx's root holds the answer to `uri`: gzip_static serves `<uri>.gz` for `<uri>`."""
    return root / (uri.lstrip("/") + (".gz" if gzipped else ""))


def fetch_answers(server: Server, paths: list[str], root: Path) -> int:
    """GET each path with Accept-Encoding: gzip and write its body under root; bytes written."""
    done = [0, 0]  # answers, bytes
    lock = threading.Lock()
    step = max(len(paths) // 10, 1)

    def fetch_share(share: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for path in share:
                connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
                response = connection.getresponse()
                body = response.read()
                if response.status == 404:
                    continue  # nginx then answers 404 too
                if response.status != 200:
                    msg = f"{server.name}: GET {path} gave {response.status}: {body[:300]!r}"
                    raise BenchmarkError(msg)
                gzipped = response.getheader("Content-Encoding") == "gzip"
                target = static_file(root, path, gzipped=gzipped)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                with lock:
                    done[0] += 1
                    done[1] += len(body)
                    if done[0] % step == 0:
                        progress(f"our answers: {done[0]:,} of {len(paths):,}")
        finally:
            connection.close()

    shares = [paths[start::EXPORT_CONNECTIONS] for start in range(EXPORT_CONNECTIONS)]
    with ThreadPoolExecutor(EXPORT_CONNECTIONS) as pool:
        for finished in [pool.submit(fetch_share, share) for share in shares]:
            finished.result()
    return done[1]


# The servers ---------------------------------------------------------------------------------


def precomputed_loads(layout: Layout, facts: DataFacts, etags: Path) -> dict[str, Load]:
    """The scenarios of answers built before any request: ours and nginx serve the same URIs."""
    items = str(layout.items)
    revalidation = Load(
        "revalidate.lua",
        (str(etags),),
        path=TIMESERIES_PATH,
        not_modified=True,
        note=f"with If-None-Match: <its ETag>, {ETAG_SAMPLE} items",
    )
    return {
        TIMESERIES: Load(
            "random_item.lua",
            (TIMESERIES_PATH, items),
            path=TIMESERIES_PATH,
            rows=facts.forecast_rows,
        ),
        REVALIDATION: revalidation,
        # Under a closed-loop load, p50 is about connections / throughput: one connection
        # shows what the 304 path itself costs.
        REVALIDATION_ALONE: dataclasses.replace(revalidation, connections=1),
        SUMMARY: Load("random_item.lua", (SUMMARY_PATH, items), path=SUMMARY_PATH),
        INVENTORY: Load(
            "random_item.lua",
            (INVENTORY_PATH, items),
            path=INVENTORY_PATH,
            rows=facts.inventory_rows,
        ),
    }


def query_loads(layout: Layout, facts: DataFacts) -> dict[str, Load]:
    """Our scenarios that select part of the data: a date range, a search, a listing's pages."""
    items = str(layout.items)
    layout.dates.write_text("".join(f"{day}\n" for day in facts.dates))
    in_range = f"{TIMESERIES_PATH}?from={{from}}&to={{to}}"
    search = "/api/v1/items?q={item}"
    listing = "/api/v1/items?" + urllib.parse.urlencode(
        {"category": facts.category, "limit": LISTING_LIMIT}
    )
    # The cursor is an opaque token: measure() puts in the `next` of the first page.
    next_page = f"{listing}&cursor={{cursor}}"
    return {
        RANGE: Load(
            "random_range.lua",
            (in_range, items, str(layout.dates), str(RANGE_DAYS)),
            path=in_range,
            rows=facts.window_rows,
            window=facts.window,
            note=f"({RANGE_DAYS} consecutive dates of the series, drawn per request)",
        ),
        SEARCH: Load("random_item.lua", (search, items), path=search, rows=1),
        LISTING: Load(
            "random_item.lua",
            (listing, items),
            path=listing,
            rows=min(LISTING_LIMIT, facts.category_items),
        ),
        LISTING_CURSOR: Load(
            "random_item.lua",
            (next_page, items),
            path=next_page,
            rows=min(LISTING_LIMIT, facts.category_items - LISTING_LIMIT),
        ),
    }


def our_server(layout: Layout, facts: DataFacts, token: str | None = None) -> Server:
    """Our server over the imported store, reads open or, given a token, requiring it."""
    port = free_port()
    # The per-client limit would answer 429 to a load generator that is one address; the
    # highest limit keeps the shared limiter's bookkeeping in every request, as deployed.
    env = {"APPLIANCE_RATE_LIMIT": str(OUR_RATE_LIMIT)}
    if token is None:
        name, headers, header_note = "ours", {}, ""
        etags = layout.ours / "etags.tsv"
        loads = precomputed_loads(layout, facts, etags) | query_loads(layout, facts)
    else:
        name = OURS_GUARDED
        env["APPLIANCE_VIEWER_TOKEN_FILE"] = str(layout.viewer_token)
        headers = {"Authorization": f"Bearer {token}"}
        header_note = "Authorization: Bearer <the viewer token>"
        etags = layout.ours / "etags-viewer-token.tsv"
        loads = {
            scenario: load
            for scenario, load in precomputed_loads(layout, facts, etags).items()
            if scenario in PRECOMPUTED
        }
    return Server(
        name=name,
        argv=[
            str(BIN / "appliance"),
            "serve",
            "--data-dir",
            str(layout.ours_data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
        ],
        port=port,
        ready_path="/health/ready",
        data=[(layout.ours_data / "current").resolve()],
        env=env,
        headers=headers,
        header_note=header_note,
        etags=etags,
        required_headers=PRODUCTION_HEADERS,
        loads=loads,
    )


def nginx_server(layout: Layout, facts: DataFacts) -> Server:
    """nginx serving the static copy of our answers, with a configuration of its own."""
    port = free_port()
    folder = layout.nginx
    (folder / "temp").mkdir(parents=True, exist_ok=True)
    (folder / "access.log").unlink(missing_ok=True)  # this run's only: hundreds of MB a run
    config = folder / "nginx.conf"
    config.write_text(nginx_config(layout, port))
    etags = folder / "etags.tsv"
    return Server(
        name="nginx",
        argv=[str(NGINX), "-p", f"{folder}/", "-c", str(config), "-g", "daemon off;"],
        port=port,
        ready_path=SUMMARY_PATH,
        data=[layout.static_root],
        etags=etags,
        config=config,
        loads=precomputed_loads(layout, facts, etags),
    )


def nginx_config(layout: Layout, port: int) -> str:
    """nginx.conf: 2 workers, sendfile, our .gz files as they are, an access log, no daemon."""
    folder = layout.nginx
    temp = folder / "temp"
    # As root, nginx's workers would otherwise run as nobody, who may not read the work folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {WORKERS};
pid {folder / "nginx.pid"};
error_log stderr;
events {{
    worker_connections 1024;
}}
http {{
    access_log {folder / "access.log"};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    sendfile on;
    default_type application/json;
    # Our answers are stored gzip-compressed only, as ours stores them: `always` serves the .gz
    # file, and gunzip inflates it for a client that does not accept gzip, as ours does.
    gzip_static always;
    gunzip on;
    server {{
        listen 127.0.0.1:{port};
        root {layout.static_root};
    }}
}}
"""


FLOOR_APP = '''"""The framework floor: a bare ASGI app answering every request with one stored answer."""

import gzip
import os
from pathlib import Path

GZIPPED = Path(os.environ["BENCH_FLOOR_ANSWER"]).read_bytes()
PLAIN = gzip.decompress(GZIPPED)
JSON = (b"content-type", b"application/json")
GZIPPED_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [JSON, (b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(GZIPPED))],
}
PLAIN_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [JSON, (b"content-length", b"%d" % len(PLAIN))],
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    gzip_ok = any(name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"])
    await send(GZIPPED_START if gzip_ok else PLAIN_START)
    await send({"type": "http.response.body", "body": GZIPPED if gzip_ok else PLAIN})
'''


def floor_server(layout: Layout, facts: DataFacts) -> Server:
    """The bare Granian app, with the interface settings `appliance serve` gives Granian."""
    from appliance import settings as cfg

    port = free_port()
    layout.floor.mkdir(parents=True, exist_ok=True)
    (layout.floor / "floor.py").write_text(FLOOR_APP)
    answer = static_file(layout.static_root, TIMESERIES_PATH.replace("{item}", item_id(PROBE_ITEM)))
    if not answer.exists():
        msg = f"granian: {answer} is missing: our timeseries answers are no longer gzip-encoded?"
        raise BenchmarkError(msg)
    items = str(layout.items)
    return Server(
        name="granian",
        argv=[
            str(BIN / "granian"),
            "--interface",
            "asgi",
            "--http",
            "1",
            "--workers",
            str(WORKERS),
            "--http1-header-read-timeout",
            str(int(cfg.HEADER_TIMEOUT.default) * 1000),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--working-dir",
            str(layout.floor),
            "floor:app",
        ],
        port=port,
        ready_path="/",
        data=[answer],
        env={"BENCH_FLOOR_ANSWER": str(answer)},
        loads={
            TIMESERIES: Load(
                "random_item.lua",
                (TIMESERIES_PATH, items),
                path=TIMESERIES_PATH,
                rows=facts.forecast_rows,
                note=f"(any path: {item_id(PROBE_ITEM)}'s stored answer, {answer.stat().st_size:,} bytes gzip-encoded)",
            ),
        },
    )


def datasette_server(layout: Layout, facts: DataFacts) -> Server:
    """Datasette over the SQLite export, immutable, with ad-hoc SQL and a named parameter."""
    port = free_port()
    items = str(layout.items)
    database = f"/{layout.sqlite.stem}.json"

    def query(sql: str, **params: str) -> str:
        encoded = urllib.parse.urlencode({"sql": sql, **params, "_shape": "array"}, safe="{}")
        return f"{database}?{encoded}"

    timeseries = query(TIMESERIES_SQL.format(item=":item"), item="{item}")
    inventory = query(INVENTORY_SQL.format(item=":item"), item="{item}")
    summary = query(SUMMARY_SQL)
    return Server(
        name="datasette",
        argv=[
            str(layout.peer_bin("datasette")),
            "serve",
            "-i",
            str(layout.sqlite),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port=port,
        ready_path="/-/versions.json",
        data=[layout.sqlite],
        loads={
            TIMESERIES: Load(
                "random_item.lua", (timeseries, items), path=timeseries, rows=facts.forecast_rows
            ),
            SUMMARY: Load("random_item.lua", (summary, items), path=summary),
            INVENTORY: Load(
                "random_item.lua", (inventory, items), path=inventory, rows=facts.inventory_rows
            ),
        },
    )


def roapi_server(layout: Layout, facts: DataFacts) -> Server:
    """ROAPI over the Parquet files read in place, queried through its SQL endpoint."""
    port = free_port()
    items = str(layout.items)
    timeseries = TIMESERIES_SQL.format(item="'{item}'")
    inventory = INVENTORY_SQL.format(item="'{item}'")
    return Server(
        name="roapi",
        argv=[
            str(layout.peer_bin("roapi")),
            "--addr-http",
            f"127.0.0.1:{port}",
            # ROAPI also listens for Postgres and FlightSQL, on fixed default ports otherwise.
            "--addr-postgres",
            f"127.0.0.1:{free_port()}",
            "--addr-flight-sql",
            f"127.0.0.1:{free_port()}",
            *(argument for name in TABLES for argument in ("--table", roapi_table(layout, name))),
        ],
        port=port,
        ready_path="/api/schema",
        data=[layout.tables],
        loads={
            TIMESERIES: Load(
                "random_item.lua",
                ("/api/sql", items, "POST", timeseries),
                method="POST",
                path="/api/sql",
                body=timeseries,
                rows=facts.forecast_rows,
            ),
            SUMMARY: Load(
                "random_item.lua",
                ("/api/sql", items, "POST", SUMMARY_SQL),
                method="POST",
                path="/api/sql",
                body=SUMMARY_SQL,
            ),
            INVENTORY: Load(
                "random_item.lua",
                ("/api/sql", items, "POST", inventory),
                method="POST",
                path="/api/sql",
                body=inventory,
                rows=facts.inventory_rows,
            ),
        },
    )


def roapi_table(layout: Layout, name: str) -> str:
    """ROAPI's --table value for one demo table."""
    source = f"{name}={layout.tables / name}.parquet"
    if name in ROAPI_READ_IN_PLACE:
        return f"{source},format=parquet,use_memory_table=false"
    return source


# Running a server ----------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer, read whole; header names in lower case."""

    status: int
    headers: dict[str, str]
    body: bytes

    def content(self) -> bytes:
        """The body, inflated if the server sent it gzip-encoded."""
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body


def fetch(
    server: Server,
    path: str,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request to the server under test, whatever its status."""
    data = body.encode() if body is not None else None
    # Always http://127.0.0.1: server.url() builds every URL.
    request = urllib.request.Request(  # noqa: S310
        server.url(path), data=data, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, received, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, received, content = exc.code, exc.headers, exc.read()
    return Answer(status, {name.lower(): value for name, value in received.items()}, content)


def wait_ready(server: Server, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the readiness URL every 10 ms until it answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < READY_DEADLINE_SECONDS:
        if process.poll() is not None:
            msg = f"{server.name} exited with {process.returncode} before it was ready; see {log}:\n{tail(log)}"
            raise BenchmarkError(msg)
        with contextlib.suppress(OSError):
            if fetch(server, server.ready_path).status == 200:
                return
        time.sleep(READY_POLL_SECONDS)
    msg = f"{server.name} not ready after {READY_DEADLINE_SECONDS:.0f} s; see {log}"
    raise BenchmarkError(msg)


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server's log."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(server: Server, logs: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start the server in its own process group; (process, ready seconds). Always stops it."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{server.log_name}.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            server.argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **server.env},
            start_new_session=True,
        )
        try:
            wait_ready(server, process, log)
            yield process, time.perf_counter() - started
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and the workers it forked: TERM to its process group, KILL what lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    while group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def group_alive(group: int) -> bool:
    """Whether any process is left in a process group."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def group_stats(group: int) -> Iterator[tuple[Path, list[str]]]:
    """Each process of a process group: its /proc folder and the stat fields after its name."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The name is in parentheses and may hold spaces; fields[2] is the process group.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            yield stat.parent, fields


def group_rss_mib(process: subprocess.Popen[bytes]) -> float:
    """Resident memory of the server's whole process group (it may fork workers), in MiB."""
    total_kib = 0
    for folder, _ in group_stats(process.pid):
        with contextlib.suppress(OSError):
            match = re.search(r"^VmRSS:\s+(\d+) kB", (folder / "status").read_text(), re.MULTILINE)
            total_kib += int(match[1]) if match else 0
    return total_kib / 1024


def probe(server: Server, load: Load, headers: dict[str, str]) -> Answer:
    """The scenario's request for the probe item (and date range), with the load's headers."""
    item = item_id(PROBE_ITEM)
    body = load.body.replace("{item}", item) if load.body else None
    path = load.path.replace("{item}", item)
    if load.window is not None:
        path = path.replace("{from}", load.window[0]).replace("{to}", load.window[1])
    return fetch(server, path, load.method, body, headers)


def check_answer(server: Server, scenario: str, load: Load, headers: dict[str, str]) -> None:
    """Send the scenario's request for the probe item once; raise unless the answer is right."""
    if load.not_modified:
        path, etag = first_sample(load)
        answer = fetch(server, path, headers={**headers, "If-None-Match": etag})
        if answer.status != 304:
            msg = f"{server.name} {scenario}: If-None-Match gave {answer.status}, not 304"
            raise BenchmarkError(msg)
        return
    answer = probe(server, load, headers)
    if answer.status != 200:
        msg = f"{server.name} {scenario}: HTTP {answer.status}: {answer.content()[:300]!r}"
        raise BenchmarkError(msg)
    missing = [name for name in server.required_headers if name not in answer.headers]
    if missing:
        msg = f"{server.name} {scenario}: the answer lacks {', '.join(missing)}: production defaults are off"
        raise BenchmarkError(msg)
    try:
        document = json.loads(answer.content())
    except ValueError as exc:
        msg = f"{server.name} {scenario}: not JSON: {answer.content()[:300]!r}"
        raise BenchmarkError(msg) from exc
    found = longest_list(document)
    if load.rows is not None and found != load.rows:
        msg = f"{server.name} {scenario}: {item_id(PROBE_ITEM)} answered {found} rows, expected {load.rows}"
        raise BenchmarkError(msg)
    if load.rows is None and not document:
        msg = f"{server.name} {scenario}: empty answer"
        raise BenchmarkError(msg)


def first_sample(load: Load) -> tuple[str, str]:
    """The first (path, ETag) pair of a revalidation sample file."""
    path, _, etag = Path(load.args[0]).read_text().splitlines()[0].partition("\t")
    return path, etag


def longest_list(document: object) -> int:
    """Length of the longest list anywhere in a JSON document: the rows, whatever the shape."""
    if isinstance(document, list):
        return max([len(document), *(longest_list(value) for value in document)])
    if isinstance(document, dict):
        return max([0, *(longest_list(value) for value in document.values())])
    return 0


def check_token_required(server: Server, headers: dict[str, str]) -> None:
    """Raise unless the server refuses the probe's timeseries to a request without a token."""
    answer = probe(server, server.loads[TIMESERIES], headers)
    if answer.status != 401:
        msg = (
            f"{server.name}: without the viewer token, the timeseries gave {answer.status}, not 401"
        )
        raise BenchmarkError(msg)


def resolve_cursor(server: Server, headers: dict[str, str]) -> None:
    """Put the first listing page's `next` token into the cursor scenario's request."""
    first = server.loads[LISTING].path
    answer = fetch(server, first, headers=headers)
    token = json.loads(answer.content()).get("next") if answer.status == 200 else None
    if not isinstance(token, str):
        msg = f"{server.name}: GET {first} gave {answer.status} and no `next` token"
        raise BenchmarkError(msg)
    load = server.loads[LISTING_CURSOR]
    path = load.path.replace("{cursor}", urllib.parse.quote(token))
    server.loads[LISTING_CURSOR] = dataclasses.replace(load, path=path, args=(path, *load.args[1:]))


def sample_etags(server: Server, items: int, sample: Path, headers: dict[str, str]) -> None:
    """Fetch the timeseries of a fixed sample of items and write "path<TAB>ETag" lines."""
    numbers = random.Random(0).sample(range(1, items + 1), min(ETAG_SAMPLE, items))  # noqa: S311
    lines = []
    for number in numbers:
        path = TIMESERIES_PATH.replace("{item}", item_id(number))
        answer = fetch(server, path, headers=headers)
        etag = answer.headers.get("etag")
        if answer.status != 200 or not etag:
            msg = f"{server.name}: GET {path} gave {answer.status} with ETag {etag!r}"
            raise BenchmarkError(msg)
        lines.append(f"{path}\t{etag}\n")
    sample.write_text("".join(lines))


def etag_note(server: Server, headers: dict[str, str]) -> str | None:
    """Why a peer has no revalidation scenario: what it sends instead of an ETag, if anything."""
    answer = probe(server, server.loads[TIMESERIES], headers)
    if "etag" in answer.headers:
        return None
    cache = answer.headers.get("cache-control")
    return "n/a: no ETag" + (f" (Cache-Control: {cache})" if cache else "")


# wrk -----------------------------------------------------------------------------------------

LATENCY_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
PERCENTILE = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
TOTAL = re.compile(r"^\s+(\d+) requests in ", re.MULTILINE)
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
BAD_STATUS = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True)
class WrkSettings:
    """The one load every server gets."""

    threads: int
    connections: int
    duration: str
    warmup: str
    timeout: str
    accept_encoding: str

    def headers(self, server: Server | None = None) -> dict[str, str]:
        """Headers every request carries, the load's and the probes', and the server's own."""
        common = {"Accept-Encoding": self.accept_encoding} if self.accept_encoding else {}
        return common | (server.headers if server else {})

    def argv(self, server: Server, load: Load, duration: str) -> list[str]:
        """The wrk command line for one run."""
        connections = load.connections or self.connections
        return [
            "wrk",
            "--threads",
            str(min(self.threads, connections)),
            "--connections",
            str(connections),
            "--duration",
            duration,
            "--timeout",
            self.timeout,
            "--latency",
            *(f"--header={name}: {value}" for name, value in self.headers(server).items()),
            "--script",
            str(WRK_SCRIPTS / load.script),
            server.url("/"),
            "--",
            *load.args,
        ]


def load_server(
    settings: WrkSettings, server: Server, load: Load, process: subprocess.Popen[bytes]
) -> Result:
    """Warm up, then the measured wrk run; its parsed report and others' share of the CPU."""
    if seconds(settings.warmup) > 0:
        wrk(settings.argv(server, load, settings.warmup), seconds(settings.warmup))
    before = CpuUse.now(process.pid)
    report = wrk(settings.argv(server, load, settings.duration), seconds(settings.duration))
    result = parse_wrk(report)
    result.others_cpu = CpuUse.now(process.pid).others_since(before)
    return result


@dataclass(frozen=True)
class CpuUse:
    """CPU time so far, in clock ticks: the machine's, the server's, and waited children's (wrk)."""

    busy: int
    total: int
    server: int
    children: float

    @classmethod
    def now(cls, group: int) -> CpuUse:
        """Read the counters now, the server being process group `group`."""
        # First line of /proc/stat: cpu user nice system idle iowait irq softirq steal.
        ticks = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        # utime, stime, cutime, cstime: the server's processes and the workers they reaped.
        server = sum(sum(int(n) for n in fields[11:15]) for _, fields in group_stats(group))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            busy=sum(ticks) - ticks[3] - ticks[4],
            total=sum(ticks),
            server=server,
            children=(children.ru_utime + children.ru_stime) * os.sysconf("SC_CLK_TCK"),
        )

    def others_since(self, before: CpuUse) -> float:
        """Percent of the machine's CPU that neither the server nor wrk used since `before`."""
        ours = (self.server - before.server) + (self.children - before.children)
        others = self.busy - before.busy - ours
        return max(0.0, 100 * others / max(self.total - before.total, 1))


def wrk(argv: list[str], duration: float) -> str:
    """Run wrk, bounded in time; its report."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=duration + 60
        )
    except subprocess.TimeoutExpired as exc:
        msg = f"wrk did not finish: {shlex.join(argv)}"
        raise BenchmarkError(msg) from exc
    if done.returncode != 0:
        msg = f"wrk failed: {shlex.join(argv)}\n{done.stderr.strip()}"
        raise BenchmarkError(msg)
    return done.stdout


def parse_wrk(report: str) -> Result:
    """Requests/s, p50, p99, socket errors and bad statuses from a `wrk --latency` report."""
    rate, total = RATE.search(report), TOTAL.search(report)
    if rate is None or total is None:
        msg = f"unexpected wrk report:\n{report}"
        raise BenchmarkError(msg)
    percentiles = {
        int(match[1]): float(match[2]) * LATENCY_UNITS_MS[match[3]]
        for match in PERCENTILE.finditer(report)
    }
    socket_errors = SOCKET_ERRORS.search(report)
    bad_status = BAD_STATUS.search(report)
    counts = [int(n) for n in socket_errors.groups()] if socket_errors else [0, 0, 0, 0]
    return Result(
        requests_per_second=float(rate[1]),
        p50_ms=percentiles.get(50),
        p99_ms=percentiles.get(99),
        requests=int(total[1]),
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        bad_status=int(bad_status[1]) if bad_status else 0,
    )


# The run -------------------------------------------------------------------------------------


@dataclass
class Measured:
    """What one server did: its readiness, memory and a result (or a note) per scenario."""

    server: Server
    ready_seconds: float
    rss_mib: float
    results: dict[str, Result | str]


def measure(settings: WrkSettings, server: Server, layout: Layout) -> Measured:
    """Start the server, check its answers, load each scenario, stop it."""
    warm_page_cache(server)
    progress(f"{server.name}: starting: {server.command()}")
    with running(server, layout.logs) as (process, ready):
        progress(f"{server.name}: ready in {ready:.2f} s")
        results: dict[str, Result | str] = {}
        headers = settings.headers(server)
        if server.etags is not None:
            sample_etags(server, layout.items, server.etags, headers)
        elif server.name in PEER_REQUIREMENTS and (note := etag_note(server, headers)):
            results[REVALIDATION] = results[REVALIDATION_ALONE] = note
        if "Authorization" in server.headers:
            check_token_required(server, settings.headers())
        if LISTING_CURSOR in server.loads:
            resolve_cursor(server, headers)
        for scenario, load in server.loads.items():
            check_answer(server, scenario, load, headers)
        for scenario, load in server.loads.items():
            progress(f"{server.name}: {scenario}: wrk for {settings.duration} ...")
            try:
                result = load_server(settings, server, load, process)
            except BenchmarkError as exc:
                # One failed run is a row of the report; a server that died ends its turn.
                if process.poll() is not None:
                    msg = f"{server.name} died during {scenario}; see {layout.logs}:\n{exc}"
                    raise BenchmarkError(msg) from exc
                progress(f"{server.name}: {scenario}: {exc}")
                results[scenario] = f"failed: {str(exc).splitlines()[-1]}"
                continue
            progress(
                f"{server.name}: {scenario}: {result.requests_per_second:,.1f} req/s, "
                f"errors {result.errors()}, others used {result.others_cpu:.0f}% of the CPU"
            )
            results[scenario] = result
        rss = group_rss_mib(process)
    return Measured(server, ready, rss, results)


def warm_page_cache(server: Server) -> None:
    """Read the server's data files once, so it starts as on a node that has served a while.

    The kernel here reclaims cold pages proactively (DAMON): a file read minutes ago may be
    back on disk, and the first seconds of a load would measure the disk instead of the server.
    """
    started = time.perf_counter()
    files = [path for root in server.data for path in (root, *root.rglob("*")) if path.is_file()]
    size = 0
    for path in files:
        with path.open("rb") as data:
            while chunk := data.read(WARM_CHUNK_BYTES):
                size += len(chunk)
    progress(
        f"{server.name}: read {size / 2**20:,.0f} MiB of data into the page cache "
        f"in {time.perf_counter() - started:.1f} s"
    )


def milliseconds(value: float | None) -> str:
    """A latency cell."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def found(measured: list[Measured], name: str, scenario: str) -> Result | None:
    """One server's result in one scenario, if it was measured."""
    for entry in measured:
        if entry.server.name == name:
            result = entry.results.get(scenario)
            return result if isinstance(result, Result) else None
    return None


def rate(result: Result | None) -> float | None:
    """Requests/s of a result, if there is one."""
    return None if result is None else result.requests_per_second


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, if both were measured."""
    if value is None or reference is None:
        return None
    return value / max(reference, 1e-9)


def times(value: float | None) -> str:
    """A ratio cell."""
    return "" if value is None else f"{value:,.2f}x"


def print_report(
    measured: list[Measured], settings: WrkSettings, layout: Layout, skipped: dict[str, str]
) -> None:
    """The results table, readiness, goal ratios and the exact requests, in Markdown."""
    rows = layout.items * layout.days
    print(
        f"{layout.items:,} items (scale {layout.items / BASE_ITEMS:g}) x {layout.days} days = "
        f"{rows:,} forecast rows; wrk {settings.threads} threads, {settings.connections} "
        f"connections, {settings.duration} per scenario after a {settings.warmup} warm-up, "
        f"timeout {settings.timeout}; {os.cpu_count()} cores shared by wrk and the server. "
        '"x nginx": req/s over nginx\'s in the same scenario; "x timeseries": over the same '
        "server's whole-timeseries req/s.\n"
    )
    print(
        "| server | scenario | req/s | x nginx | x timeseries | p50 ms | p99 ms | errors "
        "| others' CPU |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for entry in measured:
        for scenario in SCENARIOS:
            result = entry.results.get(scenario)
            if isinstance(result, Result):
                per_second = result.requests_per_second
                anchor = rate(found(measured, "nginx", scenario))
                own = rate(found(measured, entry.server.name, TIMESERIES))
                cells = [
                    f"{per_second:,.1f}",
                    times(ratio(per_second, anchor)),
                    times(ratio(per_second, own)) if scenario in SHARE_OF_TIMESERIES else "",
                    milliseconds(result.p50_ms),
                    milliseconds(result.p99_ms),
                    result.errors(),
                    f"{result.others_cpu:.0f}%",
                ]
            elif isinstance(result, str):
                cells = [result, *[""] * 6]
            else:
                continue
            print(f"| {entry.server.name} | {scenario} | " + " | ".join(cells) + " |")
    for name, reason in skipped.items():
        print(f"| {name} | (all) | skipped: {reason} |" + " |" * 6)
    busy = [
        f"{entry.server.name} {scenario}"
        for entry in measured
        for scenario, result in entry.results.items()
        if isinstance(result, Result) and result.others_cpu > QUIET_CPU_PERCENT
    ]
    if busy:
        print(
            f"\nOther processes used over {QUIET_CPU_PERCENT}% of the CPU during: "
            f"{', '.join(busy)}. Those rows are low; rerun on a quiet machine."
        )

    print("\n| server | ready after start (s) | RSS after the load (MiB) |")
    print("| --- | ---: | ---: |")
    for entry in measured:
        print(f"| {entry.server.name} | {entry.ready_seconds:.2f} | {entry.rss_mib:,.0f} |")

    print_goals(measured, settings)

    print("\nHow each server ran ({item} = a random item id per request):\n")
    for entry in measured:
        server = entry.server
        print(f"- {server.name}: `{server.command()}`")
        if server.config is not None:
            print(f"  - configuration: `{server.config}`")
        if server.header_note:
            print(f"  - every request also sends `{server.header_note}`")
        print(f"  - ready: GET {server.ready_path}")
        for scenario, load in server.loads.items():
            print(f"  - {scenario}: `{load.describe()}`")


Goal = tuple[str, str, bool | None]  # what, the measured value or ratio, met (None: unknown)


def anchor_goals(measured: list[Measured], settings: WrkSettings) -> list[Goal]:
    """Both rows of ours: each precomputed answer at a share of nginx's rate, p99 bounded."""
    goals: list[Goal] = []
    for name in OURS:
        for scenario in PRECOMPUTED:
            goal = (
                f"{name}: {scenario} >= {NGINX_SHARE:g}x nginx, p99 <= {P99_LIMIT_MS:g} ms "
                f"at {settings.connections} connections"
            )
            ours, anchor = found(measured, name, scenario), found(measured, "nginx", scenario)
            if ours is None or ours.p99_ms is None:
                goals.append((goal, "not measured", None))
                continue
            p99 = f"p99 {milliseconds(ours.p99_ms)} ms"
            share = ratio(ours.requests_per_second, rate(anchor))
            if share is None:
                goals.append((goal, f"nginx not measured, {p99}", None))
            else:
                met = share >= NGINX_SHARE and ours.p99_ms <= P99_LIMIT_MS
                goals.append((goal, f"{share:,.2f}x, {p99}", met))
    return goals


def share_goals(measured: list[Measured]) -> list[Goal]:
    """Ranges, search and listing at a share of our own whole-timeseries rate."""
    whole = found(measured, "ours", TIMESERIES)
    goals: list[Goal] = []
    for scenario, wanted in SHARE_OF_TIMESERIES.items():
        goal = f"ours: {scenario} >= {wanted:g}x our whole timeseries"
        part = found(measured, "ours", scenario)
        share = ratio(rate(part), rate(whole))
        if share is None:
            goals.append((goal, "not measured", None))
        else:
            goals.append((goal, f"{share:,.2f}x", share >= wanted))
    return goals


def standing_goals(measured: list[Measured], settings: WrkSettings) -> list[Goal]:
    """The earlier goals still in force: the 304 path, readiness, the peers."""
    goals: list[Goal] = []
    alone, loaded = (
        found(measured, "ours", REVALIDATION_ALONE),
        found(measured, "ours", REVALIDATION),
    )
    goal = "ours: cached (304) p50 <= 2 ms, 1 connection"
    if alone is None or alone.p50_ms is None:
        goals.append((goal, "not measured", None))
    else:
        under_load = (
            f" ({loaded.p50_ms:,.2f} ms at {settings.connections})"
            if loaded and loaded.p50_ms is not None
            else ""
        )
        goals.append((goal, f"{alone.p50_ms:,.2f} ms{under_load}", alone.p50_ms <= 2))
    goal = "ours: ready <= 2 s after start"
    ready = next((e.ready_seconds for e in measured if e.server.name == "ours"), None)
    goals.append(
        (goal, "not measured", None) if ready is None else (goal, f"{ready:.2f} s", ready <= 2)
    )
    ours = found(measured, "ours", TIMESERIES)
    for peer, factor in PEER_FACTORS.items():
        goal = f"ours: timeseries >= {factor}x {peer}"
        theirs = found(measured, peer, TIMESERIES)
        over = ratio(rate(ours), rate(theirs))
        if over is None:
            goals.append((goal, "not measured", None))
        else:
            goals.append((goal, f"{over:,.1f}x", over >= factor))
    return goals


def print_goals(measured: list[Measured], settings: WrkSettings) -> None:
    """The goals for our server, each with its measured ratio or value, and whether it is met."""
    goals = anchor_goals(measured, settings) + share_goals(measured)
    print("\n| goal | measured | met |")
    print("| --- | ---: | --- |")
    for goal, value, met in goals + standing_goals(measured, settings):
        print(f"| {goal} | {value} | {'' if met is None else 'yes' if met else 'NO'} |")


def chosen_servers(only: str) -> list[str]:
    """The servers named by --only, in the canonical order."""
    names = {name.strip() for name in only.split(",") if name.strip()}
    unknown = names - set(SERVERS)
    if unknown:
        msg = f"--only: unknown server(s) {', '.join(sorted(unknown))}; choose from {', '.join(SERVERS)}"
        raise BenchmarkError(msg)
    return [name for name in SERVERS if name in names]


def prepare(layout: Layout, names: list[str], skip_setup: bool) -> None:
    """Make or reuse everything the chosen servers serve, but the copy of our answers."""
    needs_ours = any(name in names for name in ("ours", *NEED_OUR_ANSWERS))
    if skip_setup:
        missing = [str(layout.tables)] if not layout.tables.exists() else []
        if "datasette" in names and not layout.sqlite.exists():
            missing.append(str(layout.sqlite))
        missing += [
            str(layout.peer_bin(n))
            for n in PEER_REQUIREMENTS
            if n in names and not layout.peer_bin(n).exists()
        ]
        if needs_ours and not (layout.ours_data / "current").exists():
            missing.append(str(layout.ours_data))
        if any(name in names for name in NEED_OUR_ANSWERS) and not layout.static_root.exists():
            missing.append(str(layout.static_root))
        if missing:
            msg = f"--skip-setup, but setup has not made: {', '.join(missing)}"
            raise BenchmarkError(msg)
        return
    make_tables(layout)
    if "datasette" in names:
        export_sqlite(layout)
    for name in PEER_REQUIREMENTS:
        if name in names:
            install_peer(layout, name)
    if needs_ours:
        import_ours(layout)


def servers_named(name: str, layout: Layout, facts: DataFacts) -> list[Server]:
    """The server(s) one --only name stands for: ours is two, reads open and token-guarded."""
    if name == "ours":
        return [our_server(layout, facts), our_server(layout, facts, viewer_token(layout))]
    factories = {
        "nginx": nginx_server,
        "granian": floor_server,
        "datasette": datasette_server,
        "roapi": roapi_server,
    }
    return [factories[name](layout, facts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="field scales: --items times this (5 or 10 for 5x, 10x); a work folder per scale",
    )
    parser.add_argument("--items", type=int, default=BASE_ITEMS, help="items at scale 1")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", default="15s", help="measured wrk run per scenario")
    parser.add_argument("--warmup", default="3s", help="unreported wrk run before each (0 = none)")
    parser.add_argument("--timeout", default="10s", help="wrk's timeout for one request")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--accept-encoding",
        default="gzip",
        help="Accept-Encoding of every request, as browsers send it ('' = none)",
    )
    parser.add_argument("--workdir", type=Path, default=Path(".bench/server"))
    parser.add_argument("--peers", type=Path, default=Path(".bench/peers"), help="peer venvs")
    parser.add_argument(
        "--only",
        default=",".join(SERVERS),
        help="servers to run, comma-separated (ours = both of our rows)",
    )
    parser.add_argument("--skip-setup", action="store_true", help="reuse prepared data as is")
    args = parser.parse_args()

    # A TERM (from a CI timeout, say) unwinds like Ctrl-C, so every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_benchmark(args)
    except BenchmarkError as exc:
        sys.exit(f"benchmark: {exc}")
    except KeyboardInterrupt:
        sys.exit("benchmark: interrupted; the servers it started are stopped")


def run_benchmark(args: argparse.Namespace) -> None:
    """Set up, measure each chosen server in turn, report."""
    if shutil.which("wrk") is None:
        msg = "wrk is not on PATH: install it with `apt-get install wrk`"
        raise BenchmarkError(msg)
    if args.scale < 1 or args.items < 1:
        msg = "--scale and --items must be at least 1"
        raise BenchmarkError(msg)
    names = chosen_servers(args.only)
    skipped: dict[str, str] = {}
    if not serve_available():
        for name in ("ours", *NEED_OUR_ANSWERS):
            if name in names:
                skipped[name] = "`appliance serve` does not exist yet" + (
                    "" if name == "ours" else ", and this row serves its answers"
                )
    if "nginx" in names and not NGINX.exists():
        skipped["nginx"] = f"{NGINX} is missing: install it with `apt-get install nginx-light`"
    for name, reason in skipped.items():
        progress(f"{name}: skipped: {reason}")
        names.remove(name)
    if not names:
        msg = "no server left to measure"
        raise BenchmarkError(msg)
    settings = WrkSettings(
        args.threads,
        args.connections,
        args.duration,
        args.warmup,
        args.timeout,
        args.accept_encoding,
    )
    for duration in (args.duration, args.warmup, args.timeout):
        seconds(duration)
    layout = Layout(
        args.workdir.resolve(), args.peers.resolve(), args.items * args.scale, args.days
    )
    prepare(layout, names, args.skip_setup)
    facts = data_facts(layout)
    if any(name in names for name in NEED_OUR_ANSWERS) and not args.skip_setup:
        export_answers(layout, facts)
    measured = [
        measure(settings, server, layout)
        for name in names
        for server in servers_named(name, layout, facts)
    ]
    print_report(measured, settings, layout, skipped)


if __name__ == "__main__":
    main()
