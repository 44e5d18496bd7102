"""The shared response cache's disk layer: plain diskcache against ours (BytesOnlyDisk), one run.

BytesOnlyDisk (server/cache.py) closes diskcache's pickle path (CVE-2025-69872) by checking the
type of every key and value on the way in and the mode of every row on the way out. This
measures what that costs: gets and sets per second of a `diskcache.Cache` with its default Disk
and of one with BytesOnlyDisk, on the same keys and bodies (a small answer kept in the SQLite
row, a large one kept in a value file), in alternating rounds so both see the same machine.
Prints a Markdown table (the median round of each).

    python benchmarks/bench_cache.py [--rounds 7] [--workdir .bench/cache]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import diskcache

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.cache import BytesOnlyDisk  # noqa: E402

SIZES = {"1 KiB (in the row)": 1 << 10, "64 KiB (in a value file)": 64 << 10}
KEYS = 2000
GETS_PER_ROUND = 20_000
SETS_PER_ROUND = 2_000
Disks = {"plain diskcache": diskcache.Disk, "ours (BytesOnlyDisk)": BytesOnlyDisk}


def key(number: int) -> str:
    """A key shaped like the server's: the version, then the answer's ETag."""
    return f'v0001|"v0001-{number:016x}"'


def rate(operations: int, work: Callable[[], None]) -> float:
    """Operations per second of one call of `work`."""
    started = time.perf_counter()
    work()
    return operations / (time.perf_counter() - started)


def one_round(folder: Path, disk: type[diskcache.Disk], body: bytes) -> tuple[float, float]:
    """(sets per second, gets per second) on a fresh cache in `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    cache = diskcache.Cache(str(folder), size_limit=1 << 30, disk=disk)
    try:

        def set_all() -> None:
            for number in range(SETS_PER_ROUND):
                cache.set(key(number % KEYS), body)

        def get_all() -> None:
            for number in range(GETS_PER_ROUND):
                if cache.get(key(number % KEYS)) is None:
                    raise AssertionError("a miss in the benchmark")

        return rate(SETS_PER_ROUND, set_all), rate(GETS_PER_ROUND, get_all)
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=REPO / ".bench" / "cache")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print("| value | cache | sets/s | gets/s |")
    print("| --- | --- | ---: | ---: |")
    for label, size in SIZES.items():
        body = os.urandom(size)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in Disks}
        for _ in range(args.rounds):
            for name, disk in Disks.items():  # alternating, so drift hits both alike
                results[name].append(one_round(args.workdir / "c", disk, body))
        for name, rounds in results.items():
            sets = statistics.median(r[0] for r in rounds)
            gets = statistics.median(r[1] for r in rounds)
            print(f"| {label} | {name} | {sets:,.0f} | {gets:,.0f} |")
    shutil.rmtree(args.workdir / "c", ignore_errors=True)


if __name__ == "__main__":
    main()
