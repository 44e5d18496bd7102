"""Field-scale API benchmark: our server, Datasette and ROAPI under the same wrk load.

Serves the same demo tables (`mlws demo`, 20,000 items x 730 days by default) three ways and
loads each server in turn, alone on the machine, with the same bounded wrk run (threads,
connections, duration, headers) on 127.0.0.1 only:

- ours: `appliance serve` over a data store made by `mlws pack` + `appliance import`, with the
  per-client rate limit raised out of the way (wrk is one client address);
- Datasette 0.65 over an SQLite export of the same four tables, opened immutable (`-i`), with the
  indexes a careful user would add for these lookups;
- ROAPI 0.12 over the same Parquet files.

Scenarios (benchmarks/wrk/random_item.lua picks a random item per request):

- timeseries: the whole forecast series of one item (730 rows), ordered by date;
- timeseries (304): ours revalidated with If-None-Match for a sample of items whose ETags the
  harness fetched first (benchmarks/wrk/revalidate.lua), at the run's connections and at one:
  under a closed-loop load p50 is about connections / throughput, so one connection shows what
  the 304 path itself costs; n/a for a peer that sends no ETag;
- summary: the aggregated KPIs (global and per category, precomputed in fact_metrics);
- inventory: the projected stock rows of one item.

Every request says `Accept-Encoding: gzip`, as browsers do (`--accept-encoding ''` to drop it);
each server answers as it does by default. Peers answer with the fastest honest query a user of
each would write, the same SQL for both: Datasette's ad-hoc SQL JSON API with a named parameter
(as fast as or faster than its table API, which also counts the matching rows); ROAPI's SQL
endpoint (as fast as its REST filters), with fact_forecast read in place from Parquet
(`use_memory_table=false`: the file is sorted by item, so row-group statistics skip all but one
or two groups, where ROAPI's default in-memory table scans all 14.6 M rows per lookup, about
half as fast) and the small tables in memory, ROAPI's default and the faster way for them.
Every server answers the probe item once before its load, and a wrong answer stops the run, so
a misconfigured peer cannot "win" with errors.

Setup (demo tables, SQLite export, peer venvs, the signed pack, our data store) is kept in the
work folder and reused by later runs; the pack is imported again whenever the `appliance`
package's source has changed. Progress goes to stderr; stdout is the report, in Markdown.

    python benchmarks/bench_server.py [--items 20000] [--days 730] [--connections 64]
        [--duration 15s] [--threads 2] [--only ours,datasette,roapi] [--skip-setup]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

BIN = Path(sys.executable).parent
WRK_SCRIPTS = Path(__file__).resolve().parent / "wrk"
TABLES = ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")
SERVERS = ("ours", "datasette", "roapi")
REVALIDATION = "timeseries (304)"
REVALIDATION_ALONE = "timeseries (304), 1 connection"
SCENARIOS = ("timeseries", REVALIDATION, REVALIDATION_ALONE, "summary", "inventory")
PEER_REQUIREMENTS = {"datasette": "datasette>=0.65,<0.66", "roapi": "roapi>=0.12,<0.13"}

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

    def describe(self) -> str:
        """The request as a reader would write it, with {item} in place of the item id."""
        if self.body is None:
            return f"{self.method} {urllib.parse.unquote_plus(self.path)}"
        return f"{self.method} {self.path} body: {self.body}"


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

    def command(self) -> str:
        """The command line, as a shell would take it."""
        return shlex.join([f"{name}={value}" for name, value in self.env.items()] + self.argv)

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"


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
    def etags(self) -> Path:
        return self.ours / "etags.tsv"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

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
    fingerprint = importer_fingerprint()
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


def importer_fingerprint() -> str:
    """A hash of the `appliance` package's source: the store it builds changes with it."""
    import appliance

    digest = hashlib.sha256()
    package = Path(appliance.__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def expected_rows(layout: Layout) -> dict[str, int]:
    """Rows the probe item has in each per-item table, counted in the Parquet files."""
    import duckdb

    con = duckdb.connect()
    try:
        counts = {}
        for name in ("fact_forecast", "fact_inventory"):
            row = con.execute(
                "SELECT count(*) FROM read_parquet(?) WHERE item_id = ?",
                [str(layout.tables / f"{name}.parquet"), item_id(PROBE_ITEM)],
            ).fetchone()
            counts[name] = int(row[0]) if row else 0
        return counts
    finally:
        con.close()


# The servers ---------------------------------------------------------------------------------


def our_server(layout: Layout, rows: dict[str, int]) -> Server:
    """Our server over the imported store; its cached scenario is set up once it runs."""
    port = free_port()
    items = str(layout.items)
    timeseries = "/api/v1/items/{item}/timeseries"
    inventory = "/api/v1/inventory/{item}"
    summary = "/api/v1/forecasts/summary"
    revalidation = Load(
        "revalidate.lua",
        (str(layout.etags),),
        path=f"{timeseries} with If-None-Match: <its ETag>, {ETAG_SAMPLE} items",
        not_modified=True,
    )
    return Server(
        name="ours",
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
            "2",
        ],
        port=port,
        ready_path="/health/ready",
        data=[(layout.ours_data / "current").resolve()],
        # The per-client limit would answer 429 to a load generator that is one address; the
        # highest limit keeps the shared limiter's bookkeeping in every request, as deployed.
        env={"APPLIANCE_RATE_LIMIT": str(OUR_RATE_LIMIT)},
        loads={
            "timeseries": Load(
                "random_item.lua",
                (timeseries, items),
                path=timeseries,
                rows=rows["fact_forecast"],
            ),
            REVALIDATION: revalidation,
            # Under a closed-loop load, p50 is about connections / throughput: one connection
            # shows what the 304 path itself costs.
            REVALIDATION_ALONE: dataclasses.replace(revalidation, connections=1),
            "summary": Load("random_item.lua", (summary, items), path=summary),
            "inventory": Load(
                "random_item.lua", (inventory, items), path=inventory, rows=rows["fact_inventory"]
            ),
        },
    )


def datasette_server(layout: Layout, rows: dict[str, int]) -> Server:
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
            "timeseries": Load(
                "random_item.lua", (timeseries, items), path=timeseries, rows=rows["fact_forecast"]
            ),
            "summary": Load("random_item.lua", (summary, items), path=summary),
            "inventory": Load(
                "random_item.lua", (inventory, items), path=inventory, rows=rows["fact_inventory"]
            ),
        },
    )


def roapi_server(layout: Layout, rows: dict[str, int]) -> Server:
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
            "timeseries": Load(
                "random_item.lua",
                ("/api/sql", items, "POST", timeseries),
                method="POST",
                path="/api/sql",
                body=timeseries,
                rows=rows["fact_forecast"],
            ),
            "summary": Load(
                "random_item.lua",
                ("/api/sql", items, "POST", SUMMARY_SQL),
                method="POST",
                path="/api/sql",
                body=SUMMARY_SQL,
            ),
            "inventory": Load(
                "random_item.lua",
                ("/api/sql", items, "POST", inventory),
                method="POST",
                path="/api/sql",
                body=inventory,
                rows=rows["fact_inventory"],
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
    log = logs / f"{server.name}.log"
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
    """The scenario's request for the probe item, with the load's headers."""
    item = item_id(PROBE_ITEM)
    body = load.body.replace("{item}", item) if load.body else None
    return fetch(server, load.path.replace("{item}", item), load.method, body, headers)


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


def sample_etags(server: Server, items: int, sample: Path, headers: dict[str, str]) -> None:
    """Fetch the timeseries of a fixed sample of items and write "path<TAB>ETag" lines."""
    numbers = random.Random(0).sample(range(1, items + 1), min(ETAG_SAMPLE, items))  # noqa: S311
    lines = []
    for number in numbers:
        path = f"/api/v1/items/{item_id(number)}/timeseries"
        answer = fetch(server, path, headers=headers)
        etag = answer.headers.get("etag")
        if answer.status != 200 or not etag:
            msg = f"{server.name}: GET {path} gave {answer.status} with ETag {etag!r}"
            raise BenchmarkError(msg)
        lines.append(f"{path}\t{etag}\n")
    sample.write_text("".join(lines))


def etag_note(server: Server, headers: dict[str, str]) -> str | None:
    """Why a peer has no revalidation scenario: what it sends instead of an ETag, if anything."""
    answer = probe(server, server.loads["timeseries"], headers)
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

    def headers(self) -> dict[str, str]:
        """Headers every request carries, the load's and the probes'."""
        return {"Accept-Encoding": self.accept_encoding} if self.accept_encoding else {}

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
            *(f"--header={name}: {value}" for name, value in self.headers().items()),
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
        if server.name == "ours":
            sample_etags(server, layout.items, layout.etags, settings.headers())
        elif note := etag_note(server, settings.headers()):
            results[REVALIDATION] = results[REVALIDATION_ALONE] = note
        for scenario, load in server.loads.items():
            check_answer(server, scenario, load, settings.headers())
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


def print_report(
    measured: list[Measured], settings: WrkSettings, layout: Layout, skipped: dict[str, str]
) -> None:
    """The results table, readiness, goal ratios and the exact requests, in Markdown."""
    rows = layout.items * layout.days
    print(
        f"{layout.items:,} items x {layout.days} days = {rows:,} forecast rows; wrk "
        f"{settings.threads} threads, {settings.connections} connections, {settings.duration} "
        f"per scenario after a {settings.warmup} warm-up, timeout {settings.timeout}; "
        f"{os.cpu_count()} cores shared by wrk and the server\n"
    )
    print("| server | scenario | req/s | p50 ms | p99 ms | errors | others' CPU |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: |")
    for entry in measured:
        for scenario in SCENARIOS:
            result = entry.results.get(scenario)
            if isinstance(result, Result):
                cells = [
                    f"{result.requests_per_second:,.1f}",
                    milliseconds(result.p50_ms),
                    milliseconds(result.p99_ms),
                    result.errors(),
                    f"{result.others_cpu:.0f}%",
                ]
            elif isinstance(result, str):
                cells = [result, "", "", "", ""]
            else:
                continue
            print(f"| {entry.server.name} | {scenario} | " + " | ".join(cells) + " |")
    for name, reason in skipped.items():
        print(f"| {name} | (all) | skipped: {reason} | | | | |")
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
        print(f"- {entry.server.name}: `{entry.server.command()}`")
        print(f"  - ready: GET {entry.server.ready_path}")
        for scenario, load in entry.server.loads.items():
            print(f"  - {scenario}: `{load.describe()}`")


def print_goals(measured: list[Measured], settings: WrkSettings) -> None:
    """The issue's goals for our server, measured against the peers in this run."""
    by_name = {entry.server.name: entry for entry in measured}

    def result(name: str, scenario: str) -> Result | None:
        entry = by_name.get(name)
        found = entry.results.get(scenario) if entry else None
        return found if isinstance(found, Result) else None

    ours = result("ours", "timeseries")
    rows: list[tuple[str, str, bool | None]] = []
    for peer, factor in (("datasette", 5), ("roapi", 2)):
        theirs = result(peer, "timeseries")
        goal = f"timeseries req/s >= {factor}x {peer}"
        if ours is None or theirs is None:
            rows.append((goal, "not measured", None))
        else:
            ratio = ours.requests_per_second / max(theirs.requests_per_second, 1e-9)
            rows.append((goal, f"{ratio:,.1f}x", ratio >= factor))
    goal = f"timeseries p99 <= 50 ms at {settings.connections} connections"
    if ours is None or ours.p99_ms is None:
        rows.append((goal, "not measured", None))
    else:
        rows.append((goal, f"{ours.p99_ms:,.1f} ms", ours.p99_ms <= 50))
    alone, loaded = result("ours", REVALIDATION_ALONE), result("ours", REVALIDATION)
    goal = "cached (304) p50 <= 2 ms, 1 connection"
    if alone is None or alone.p50_ms is None:
        rows.append((goal, "not measured", None))
    else:
        under_load = (
            f" ({loaded.p50_ms:,.2f} ms at {settings.connections})"
            if loaded and loaded.p50_ms is not None
            else ""
        )
        rows.append((goal, f"{alone.p50_ms:,.2f} ms{under_load}", alone.p50_ms <= 2))
    goal = "server ready <= 2 s after start"
    if "ours" in by_name:
        ready = by_name["ours"].ready_seconds
        rows.append((goal, f"{ready:.2f} s", ready <= 2))
    else:
        rows.append((goal, "not measured", None))
    print("\n| goal (ours) | measured | met |")
    print("| --- | ---: | --- |")
    for goal, value, met in rows:
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
    """Make or reuse everything the chosen servers serve."""
    if skip_setup:
        missing = [str(layout.tables)] if not layout.tables.exists() else []
        if "datasette" in names and not layout.sqlite.exists():
            missing.append(str(layout.sqlite))
        missing += [
            str(layout.peer_bin(n))
            for n in PEER_REQUIREMENTS
            if n in names and not layout.peer_bin(n).exists()
        ]
        if "ours" in names and not (layout.ours_data / "current").exists():
            missing.append(str(layout.ours_data))
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
    if "ours" in names:
        import_ours(layout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
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
    parser.add_argument("--only", default=",".join(SERVERS), help="servers to run, comma-separated")
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
    names = chosen_servers(args.only)
    skipped: dict[str, str] = {}
    if "ours" in names and not serve_available():
        skipped["ours"] = "`appliance serve` does not exist yet"
        progress(f"ours: skipped: {skipped['ours']}")
        names.remove("ours")
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
    layout = Layout(args.workdir.resolve(), args.peers.resolve(), args.items, args.days)
    prepare(layout, names, args.skip_setup)
    rows = expected_rows(layout)
    factories = {"ours": our_server, "datasette": datasette_server, "roapi": roapi_server}
    measured = [measure(settings, factories[name](layout, rows), layout) for name in names]
    print_report(measured, settings, layout, skipped)


if __name__ == "__main__":
    main()
