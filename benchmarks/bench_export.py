"""Exports at field scale: time, throughput and the server worker's peak memory, per export.

Makes (or reuses) the field-scale store — `mlws demo --items 20000 --days 730` (14.6 M forecast
rows), packed and imported, in the same folders as benchmarks/bench_server.py — and starts
`appliance serve` with one worker, so the process measured is the one that exports. Each
scenario downloads an export over loopback, reading as fast as it can (or slowly, for the slow
client), checks what came (bytes; rows for the CSV), and reads the worker's memory from /proc:
RSS before, and its peak during the export (VmHWM, reset before each one through clear_refs).

Then the two other ways an export could have been streamed, measured in this process on the same
database, which is why the server uses a named pipe (docs/performance.md, "Exports"):
COPY to a temporary file then read it back, and DuckDB rows formatted by Python's csv module.

    python benchmarks/bench_export.py [--workdir .bench/server] [--data-dir DIR --signers FILE]

Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb
from bench_server import BIN, BenchmarkError, Layout, free_port, import_ours, make_tables, progress

ITEMS, DAYS = 20_000, 730  # the field scale of bench_server.py, whose store this one uses
READ_BYTES = 1 << 20
SLOW_CLIENT_BYTES_PER_SECOND = 20 << 20
SLOW_CLIENT_SECONDS = 10.0
PYTHON_ROWS_SAMPLE = 2_000_000


def field_store(workdir: Path) -> tuple[Path, Path]:
    """(data dir, allowed signers) of bench_server.py's field-scale store, made if missing."""
    layout = Layout(workdir, workdir.parent / "peers", ITEMS, DAYS)
    make_tables(layout)
    import_ours(layout)
    return layout.ours_data, layout.ours / "allowed_signers"


def worker_of(parent: int) -> int:
    """The one worker process of the server (the child of Granian's main process)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    return int(entry.name)
        time.sleep(0.05)
    sys.exit("error: the server started no worker")


def status_mib(pid: int, field: str) -> float:
    """A memory line of /proc/PID/status (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    sys.exit(f"error: no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Start the worker's peak RSS (VmHWM) again from its RSS now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Result:
    scenario: str
    seconds: float
    first_byte: float
    size: int
    rows: int | None
    rss_before: float
    rss_peak: float


def download(port: int, path: str, rate: float | None = None, seconds: float | None = None,
             source: str = "127.0.0.1") -> tuple[float, float, int, int]:  # fmt: skip
    """(seconds, seconds to the first byte, bytes, CRLFs) of one export, read at `rate` B/s at most."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0))
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        if answer.status != 200:
            sys.exit(f"error: {path} answered {answer.status}: {answer.read()[:300]!r}")
        first = time.perf_counter() - started
        size = lines = 0
        while seconds is None or time.perf_counter() - started < seconds:
            chunk = answer.read1(READ_BYTES)
            if not chunk:
                break
            size += len(chunk)
            lines += chunk.count(b"\n")  # a record ends in CRLF; its LF is never split by a read
            if rate is not None:
                time.sleep(len(chunk) / rate)
    finally:
        connection.close()
    return time.perf_counter() - started, first, size, lines


def measure(pid: int, port: int, name: str, path: str, *, rows: bool, **options: float) -> Result:
    """One export, and the worker's memory around it."""
    progress(f"export: {name} ...")
    time.sleep(0.5)
    reset_peak(pid)
    before = status_mib(pid, "VmRSS")
    seconds, first, size, lines = download(port, path, **options)  # type: ignore[arg-type]
    peak = status_mib(pid, "VmHWM")
    return Result(name, seconds, first, size, lines - 1 if rows else None, before, peak)


def concurrent(pid: int, port: int, path: str) -> Result:
    """Two analysts (two loopback addresses) exporting at once: both node slots in use."""
    progress("export: two at once ...")
    time.sleep(0.5)
    reset_peak(pid)
    before = status_mib(pid, "VmRSS")
    results: list[tuple[float, float, int, int]] = []
    threads = [
        threading.Thread(target=lambda s=source: results.append(download(port, path, source=s)))
        for source in ("127.0.0.1", "127.0.0.2")
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Result("2 x fact_forecast.csv at once", seconds, max(r[1] for r in results),
                  sum(r[2] for r in results), None, before, status_mib(pid, "VmHWM"))  # fmt: skip


def serve_and_measure(data_dir: Path, signers: Path) -> list[Result]:
    port = free_port()
    env = os.environ | {"APPLIANCE_RATE_LIMIT": "0", "APPLIANCE_LOG_LEVEL": "warning"}
    argv = [str(BIN / "appliance"), "serve", "--data-dir", str(data_dir), "--signers", str(signers),
            "--port", str(port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    try:
        pid = worker_of(server.pid)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("error: the server was not ready within 120 s")
                time.sleep(0.1)
        export = "/api/v1/export"
        results = [
            measure(pid, port, "fact_forecast.csv (all 14.6 M rows)", f"{export}/fact_forecast.csv", rows=True),
            measure(pid, port, "fact_forecast.parquet (all)", f"{export}/fact_forecast.parquet", rows=False),
            measure(pid, port, "fact_forecast.csv?category=Radio", f"{export}/fact_forecast.csv?category=Radio", rows=True),
            measure(pid, port, "fact_forecast.csv?item=IT-0000001", f"{export}/fact_forecast.csv?item=IT-0000001", rows=True),
            measure(pid, port, "fact_inventory.csv (all)", f"{export}/fact_inventory.csv", rows=True),
            measure(pid, port, f"fact_forecast.csv, a client reading {SLOW_CLIENT_BYTES_PER_SECOND >> 20} MiB/s for {SLOW_CLIENT_SECONDS:g} s",
                    f"{export}/fact_forecast.csv", rows=False, rate=SLOW_CLIENT_BYTES_PER_SECOND,
                    seconds=SLOW_CLIENT_SECONDS),
            concurrent(pid, port, f"{export}/fact_forecast.csv"),
        ]  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return results


Way = tuple[str, float, float, float, float]  # way, seconds, first byte, MiB on disk, peak RSS
CSV_OPTIONS = "FORMAT csv, HEADER true, NEW_LINE '\r\n', USE_TMP_FILE false"
WHOLE_FORECAST = "SELECT * FROM v.fact_forecast"


def peak_rss() -> float:
    """This process's peak RSS so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def through_a_file(con: duckdb.DuckDBPyConnection, scratch: Path) -> Way:
    """COPY to a temporary file, then read it back: nothing can be sent until the COPY ends."""
    progress("strategy: COPY to a temporary file, then read it ...")
    target = scratch / "export.csv"
    started = time.perf_counter()
    con.execute(f"COPY ({WHOLE_FORECAST}) TO '{target}' ({CSV_OPTIONS})")
    first = time.perf_counter() - started
    on_disk = target.stat().st_size / 2**20
    with target.open("rb") as file:
        while file.read(READ_BYTES):
            pass
    target.unlink()
    return ("COPY to a temporary file, then read it", time.perf_counter() - started, first,
            on_disk, peak_rss())  # fmt: skip


def through_a_pipe(con: duckdb.DuckDBPyConnection, scratch: Path) -> Way:
    """COPY into a named pipe, read as DuckDB writes it (what server/exports.py does)."""
    progress("strategy: COPY into a named pipe, read as it is written ...")
    pipe = scratch / "export.pipe"
    pipe.unlink(missing_ok=True)
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    os.set_blocking(reader, True)

    def copy() -> None:
        try:
            con.execute(f"COPY ({WHOLE_FORECAST}) TO '{pipe}' ({CSV_OPTIONS})")
        finally:
            os.close(keep)

    started = time.perf_counter()
    writer = threading.Thread(target=copy)
    writer.start()
    first = 0.0
    while os.read(reader, READ_BYTES):
        first = first or time.perf_counter() - started
    writer.join()
    os.close(reader)
    pipe.unlink()
    return ("COPY into a named pipe (the server's way)", time.perf_counter() - started, first,
            0.0, peak_rss())  # fmt: skip


def through_python(con: duckdb.DuckDBPyConnection) -> Way:
    """DuckDB rows formatted by Python's csv module (timed on a sample, scaled to the table)."""
    progress(f"strategy: Python csv module on DuckDB rows ({PYTHON_ROWS_SAMPLE:,} rows) ...")
    started = time.perf_counter()
    # The timestamp as text in SQL, as the server's CSV has it (Python would need pytz for it).
    cursor = con.execute(
        "SELECT * REPLACE (strftime(generated_at, '%Y-%m-%dT%H:%M:%SZ') AS generated_at) "
        f"FROM v.fact_forecast LIMIT {PYTHON_ROWS_SAMPLE}"
    )
    out = io.StringIO()
    writer = csv.writer(out)
    done = 0
    first = 0.0
    while batch := cursor.fetchmany(10_000):
        writer.writerows(batch)
        out.seek(0)
        out.truncate()
        done += len(batch)
        first = first or time.perf_counter() - started
    total = (time.perf_counter() - started) * ITEMS * DAYS / done
    return (f"Python csv on DuckDB rows (timed on {done:,} rows, scaled)", total, first, 0.0,
            peak_rss())  # fmt: skip


def strategies(database: Path, scratch: Path) -> list[Way]:
    """The whole forecast as CSV three ways, on one DuckDB thread as an export has."""
    con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{database}' AS v (READ_ONLY)")
        return [through_a_pipe(con, scratch), through_a_file(con, scratch), through_python(con)]
    finally:
        con.close()


def report(results: list[Result], ways: list[Way]) -> None:
    print("Exports from `appliance serve --workers 1` on loopback, 14.6 M-row field-scale store\n")
    print(
        "| export | time s | first byte s | MiB | MiB/s | rows | worker RSS before MiB | worker peak RSS MiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        mib = r.size / 2**20
        rows = f"{r.rows:,}" if r.rows is not None else ""
        print(f"| {r.scenario} | {r.seconds:.2f} | {r.first_byte:.3f} | {mib:,.0f} | "
              f"{mib / r.seconds:,.0f} | {rows} | {r.rss_before:,.0f} | {r.rss_peak:,.0f} |")  # fmt: skip
    print("\nThe whole fact_forecast as CSV, three ways, in one process (one DuckDB thread)\n")
    print("| way | time s | first byte s | MiB on disk | peak RSS MiB of the process so far |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for way, seconds, first, disk, rss in ways:
        print(f"| {way} | {seconds:.1f} | {first:.3f} | {disk:,.0f} | {rss:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".bench/server"),
                        help="where the field-scale store is made (bench_server.py's by default)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="a store to use instead (with --signers)")
    parser.add_argument("--signers", type=Path)
    args = parser.parse_args()
    if args.data_dir is not None:
        if args.signers is None:
            sys.exit("error: --data-dir needs --signers")
        data_dir, signers = args.data_dir, args.signers
    else:
        try:
            data_dir, signers = field_store(args.workdir)
        except BenchmarkError as exc:
            sys.exit(f"error: {exc}")
    results = serve_and_measure(data_dir, signers)
    scratch = data_dir.parent / "export-scratch"
    scratch.mkdir(exist_ok=True)
    database = (data_dir / "current").resolve() / "data.duckdb"
    ways = strategies(database, scratch)
    report(results, ways)


if __name__ == "__main__":
    main()
