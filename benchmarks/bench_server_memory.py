"""The server on a large store: time to ready, and each worker's memory after serving it.

Starts `appliance serve` with N workers (default 8, one per core of the 8-core node) on a data
store made by `appliance import`, times how long `/health/ready` takes to answer 200, sends
every kind of read to every worker for a while (wrk, random items), and reads each worker's
memory from /proc: RSS, and PSS (its share of pages shared with the other workers, such as the
memory-mapped answers.bin and the page cache of the database), so the sum of PSS is what the
server takes. The unit's container limit is 12 GB (ansible/group_vars/all.yml).

    python benchmarks/bench_server_memory.py --data-dir DIR --signers FILE [--workers 8]
        [--duration 10s]

The store of a scale made by benchmarks/bench_import.py --scale N serves (its work folder
keeps them). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb

BIN = Path(sys.executable).parent
WRK_SCRIPT = Path(__file__).parent / "wrk" / "random_item.lua"
SCENARIOS = (
    "/api/v1/items/{item}/timeseries",
    "/api/v1/inventory/{item}",
    "/api/v1/items/{item}/timeseries?from=2026-10-01&to=2026-11-29",
    "/api/v1/items?q={item}",
)
CONTAINER_LIMIT_GB = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def worker_pids(parent: int) -> list[int]:
    """The server's worker processes: the children of the Granian main process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return sorted(found)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB, from smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def items_of(data_dir: Path) -> int:
    con = duckdb.connect(str(data_dir / "current" / "data.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM dim_item").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--signers", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--duration", default="10s", help="wrk run per scenario")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("error: wrk is not installed (apt-get install wrk)")
    items = items_of(args.data_dir)
    port = free_port()
    env = os.environ | {"APPLIANCE_RATE_LIMIT": "10000000"}
    argv = [str(BIN / "appliance"), "serve", "--data-dir", str(args.data_dir)]
    argv += ["--signers", str(args.signers), "--port", str(port), "--workers", str(args.workers)]
    print(f"starting {args.workers} workers on {items:,} items", file=sys.stderr)
    began = time.monotonic()
    server = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        ready = wait_ready(port, began)
        for path in SCENARIOS:
            print(f"load: {path}", file=sys.stderr)
            subprocess.run(
                ["wrk", "-t2", "-c64", f"-d{args.duration}", "-H", "Accept-Encoding: gzip",
                 "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}", "--", path, str(items)],
                check=True, capture_output=True,
            )  # fmt: skip
        report(args.workers, items, ready, worker_pids(server.pid))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def wait_ready(port: int, began: float) -> float:
    """Seconds from start until /health/ready answers 200."""
    while time.monotonic() - began < 120:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health/ready", timeout=2
            ) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.02)
    sys.exit("error: the server was not ready within 120 s")


def report(workers: int, items: int, ready: float, pids: list[int]) -> None:
    memory = [memory_mib(pid) for pid in pids]
    rss = [m[0] for m in memory]
    pss = [m[1] for m in memory]
    print(f"{workers} workers, {items:,} items; ready {ready:.2f} s after start\n")
    print("| worker | RSS MiB | PSS MiB |")
    print("| --- | ---: | ---: |")
    for pid, (one_rss, one_pss) in zip(pids, memory, strict=True):
        print(f"| {pid} | {one_rss:,.0f} | {one_pss:,.0f} |")
    print(f"| all {len(pids)} | {sum(rss):,.0f} | {sum(pss):,.0f} |")
    print(f"\nPSS of all workers against the {CONTAINER_LIMIT_GB} GB container limit: "
          f"{sum(pss) / 1024:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
