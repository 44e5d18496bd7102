"""Forecast revisions at field scale: what the import's precompute costs, and what the server pays on demand.

Three demo packs of --items x --days (seeds 7, 8 and 9, generated a day apart, so every forecast
moved and the horizons overlap in part) are imported one after the other into one store with
`appliance import`: v0002 and v0003 each precompute their revisions against the version before.
Then it prints:

1. the imports: the whole command, and the part of it the revisions took (its progress line);
2. the precompute in this process, best of --runs, on a writable copy of v0003's database: the
   horizons and each version's facts (one query per database), then the join into the table;
3. what a server worker's on-demand comparison takes, in this process with the worker's DuckDB
   settings (APPLIANCE_DUCKDB_THREADS=1, 1GB), on fresh handles: opening the other version, both
   versions' facts, the join into the in-memory table;
4. the real server (`appliance serve`, one worker, a fresh response cache per run, best of
   --runs, each run once the worker has loaded its item index): the precomputed comparison (current v0003 against v0002, the default) and an
   on-demand one (against=v0001: the first request opens v0001 and computes the pair, later
   ones reuse it), each for the list and for one item's revision, then a repeated request
   (the response cache).

    python benchmarks/bench_revisions.py [--items 20000] [--days 730] [--runs 3] [--workdir .bench/revisions] [--reuse-packs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
from bench_import import make_key, tool

from appliance.data.revisions import (
    ITEM_REVISION_TABLE,
    PAIR_TABLE,
    build_pair,
    compare_versions,
)
from appliance.data.store import DataStore
from server.data import VersionHandle

BIN = Path(sys.executable).parent
WORKDIR = Path(".bench/revisions")
SEEDS = (7, 8, 9)
GENERATED = ("2026-11-01T06:00:00Z", "2026-11-02T06:00:00Z", "2026-11-03T06:00:00Z")
REVISIONS_LINE = "revisions against "
READY_SECONDS = 60.0
# A worker is ready before its item index is loaded (a thread does it); requests made meanwhile
# share the one DuckDB thread with the loader, and would time the loader too.
SETTLE_SECONDS = 5.0
SERVER_MEMORY, SERVER_THREADS = "1GB", 1
REQUESTS = (
    ("list, precomputed (default against)", "/api/v1/revisions"),
    ("list, precomputed, next page", "/api/v1/revisions?offset=50"),
    ("item, precomputed (opens v0002 for its line)", "/api/v1/items/IT-0000001/revision"),
    ("list, on demand: first (opens v0001, computes)", "/api/v1/revisions?against=v0001"),
    ("list, on demand: next page (pair kept)", "/api/v1/revisions?against=v0001&offset=50"),
    ("list, on demand: sorted by risk", "/api/v1/revisions?against=v0001&sort=risk"),
    ("item, on demand (pair and version kept)", "/api/v1/items/IT-0000002/revision?against=v0001"),
    ("list, on demand, repeated (response cache)", "/api/v1/revisions?against=v0001"),
)


def run(argv: list[str]) -> tuple[float, str]:
    """Run a command; (wall seconds, stderr). Exits on failure."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmark: {' '.join(argv)} failed:\n{done.stderr}")
    return seconds, done.stderr


def make_packs(work: Path, items: int, days: int, reuse: bool) -> tuple[list[Path], Path]:
    """The three packs (made unless reused) and the allowed_signers that trusts them."""
    packs = work / "packs"
    made = [packs / f"seed-{seed}.pack" for seed in SEEDS]
    if reuse and all(p.exists() for p in made) and (packs / "allowed_signers").exists():
        return made, packs / "allowed_signers"
    shutil.rmtree(packs, ignore_errors=True)
    packs.mkdir(parents=True)
    key, signers = make_key(packs)
    for seed, generated, pack in zip(SEEDS, GENERATED, made, strict=True):
        tables = packs / f"seed-{seed}-tables"
        run([tool("mlws"), "demo", "--out", str(tables), "--items", str(items),
             "--days", str(days), "--seed", str(seed), "--generated-at", generated,
             "--model-version", f"demo-ensemble-seed-{seed}"])  # fmt: skip
        run([tool("mlws"), "pack", str(tables), "--key", str(key), "--dataset-id",
             "demo-telecom-spares", "--model-version", f"demo-ensemble-seed-{seed}",
             "--source", "ensemble", "--out", str(pack)])  # fmt: skip
        shutil.rmtree(tables)
    return made, signers


def import_all(
    packs: list[Path], signers: Path, data: Path
) -> list[tuple[str, float, float | None]]:
    """Import the packs in order; (version, whole import s, revisions s or None) of each."""
    shutil.rmtree(data, ignore_errors=True)
    imported = []
    for number, pack in enumerate(packs, start=1):
        argv = [tool("appliance"), "import", str(pack), "--data-dir", str(data)]
        seconds, stderr = run([*argv, "--signers", str(signers)])
        revisions = None
        for line in stderr.splitlines():
            if REVISIONS_LINE in line and " items in " in line:
                revisions = float(line.rsplit(" items in ", 1)[1].removesuffix(" s"))
        imported.append((f"v{number:04d}", seconds, revisions))
    return imported


def precompute_in_process(data: Path, work: Path, runs: int) -> tuple[float, float, int, int]:
    """(best facts s, best join s, rows, bytes of the table's blocks) of v0003 against v0002."""
    source = data / "versions" / "v0003" / "data.duckdb"
    other_path = data / "versions" / "v0002" / "data.duckdb"
    facts, joins = [], []
    rows = 0
    for _ in range(runs):
        copy = work / "copy.duckdb"
        shutil.copyfile(source, copy)
        con = duckdb.connect(str(copy))
        con.execute(f"DROP TABLE {ITEM_REVISION_TABLE}")
        con.execute(f"DROP TABLE {PAIR_TABLE}")
        generated = dict(con.execute("SELECT key, value FROM appliance_version").fetchall())
        other = duckdb.connect(str(other_path), read_only=True)
        theirs = dict(other.execute("SELECT key, value FROM appliance_version").fetchall())
        started = time.perf_counter()
        *_spans, mine_facts, their_facts = compare_versions(
            con, generated["generated_at"], other, theirs["generated_at"]
        )
        facts.append(time.perf_counter() - started)
        other.close()
        started = time.perf_counter()
        rows = build_pair(con, ITEM_REVISION_TABLE, mine_facts, their_facts)
        joins.append(time.perf_counter() - started)
        con.close()
        copy.unlink()
    con = duckdb.connect(str(source), read_only=True)
    blocks = con.execute(
        f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('{ITEM_REVISION_TABLE}')"
    ).fetchone()
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()
    con.close()
    stored = int(blocks[0]) * int(block_size[0]) if blocks and block_size else 0
    return min(facts), min(joins), rows, stored


def on_demand_in_process(data: Path, runs: int) -> tuple[float, float, float, float]:
    """(open v0001, facts first, facts again, join) seconds of v0003 against v0001, best of `runs`.

    As a worker does it (server/compared.py): the other version opened as a VersionHandle, both
    facts read through the handles' cursors, joined into a new in-memory database. Fresh
    handles each run, so "first" reads the other version's columns into an empty buffer pool.
    """
    store = DataStore(data)
    opened, first, again, joined = [], [], [], []
    for _ in range(runs):
        current = VersionHandle(store.version("v0003"), SERVER_MEMORY, SERVER_THREADS)
        current.wait_for_items()
        started = time.perf_counter()
        other = VersionHandle(store.version("v0001"), SERVER_MEMORY, SERVER_THREADS)
        opened.append(time.perf_counter() - started)
        other.wait_for_items()  # as in a settled worker: the loader does not compete
        facts = []
        for _twice in range(2):
            started = time.perf_counter()
            *_spans, mine, theirs = compare_versions(
                current.cursor(), current.meta["generated_at"],
                other.cursor(), other.meta["generated_at"],
            )  # fmt: skip
            facts.append(time.perf_counter() - started)
        first.append(facts[0])
        again.append(facts[1])
        memory = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
        started = time.perf_counter()
        build_pair(memory, "pair", mine, theirs)
        joined.append(time.perf_counter() - started)
        memory.close()
        other.retire()
        current.retire()
    return min(opened), min(first), min(again), min(joined)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_once(data: Path, signers: Path) -> dict[str, float]:
    """Start `appliance serve` (one worker, an empty cache), time each request once; ms per label."""
    shutil.rmtree(data / "cache", ignore_errors=True)
    port = free_port()
    env = os.environ | {"APPLIANCE_RATE_LIMIT": "0", "APPLIANCE_LOG_READS": "0"}
    argv = [tool("appliance"), "serve", "--data-dir", str(data), "--signers", str(signers),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: dict[str, float] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                try:
                    if client.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("benchmark: the server did not become ready")
                time.sleep(0.1)
            time.sleep(SETTLE_SECONDS)
            for label, path in REQUESTS:
                started = time.perf_counter()
                answer = client.get(path)
                times[label] = (time.perf_counter() - started) * 1000
                if answer.status_code != 200:
                    sys.exit(f"benchmark: {path} answered {answer.status_code}: {answer.text}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument(
        "--reuse-packs", action="store_true", help="keep the packs of an earlier run"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    packs, signers = make_packs(args.workdir, args.items, args.days, args.reuse_packs)
    data = args.workdir / "data"
    imported = import_all(packs, signers, data)

    print(f"{args.items:,} items x {args.days} days, seeds {', '.join(map(str, SEEDS))}\n")
    print("| version | import s | of which revisions s | share |")
    print("| --- | ---: | ---: | ---: |")
    for vid, seconds, revisions in imported:
        part = "none before it" if revisions is None else f"{revisions:.2f}"
        share = "" if revisions is None else f"{revisions / seconds:.1%}"
        print(f"| {vid} | {seconds:.1f} | {part} | {share} |")

    facts, join, rows, added = precompute_in_process(data, args.workdir, args.runs)
    print(f"\nprecompute of v0003 against v0002 in process, best of {args.runs}:")
    print(f"horizons and both versions' facts (a query on each database) = {facts:.2f} s")
    print(f"join into {ITEM_REVISION_TABLE} ({rows:,} rows) = {join:.2f} s")
    print(
        f"{ITEM_REVISION_TABLE} in v0003's data.duckdb = {added / 2**20:.2f} MiB of DuckDB blocks"
    )

    opened, first, again, joined = on_demand_in_process(data, args.runs)
    print(
        f"\non demand as a worker computes it (v0003 against v0001, 1 DuckDB thread), best of {args.runs}:"
    )
    print(f"open v0001 (answer index; its item index loads in a thread) = {opened:.2f} s")
    print(f"both versions' facts: first = {first:.2f} s, again = {again:.2f} s")
    print(f"join into the in-memory table = {joined:.2f} s")

    runs = [serve_once(data, signers) for _ in range(args.runs)]
    print(
        f"\nthe server, one worker, a fresh response cache each run, {SETTLE_SECONDS:g} s after "
        f"it is ready, best of {args.runs} (ms)\n"
    )
    print("| request | best ms | worst ms |")
    print("| --- | ---: | ---: |")
    for label, _path in REQUESTS:
        values = [times[label] for times in runs]
        print(f"| {label} | {min(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
