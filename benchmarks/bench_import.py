"""Field-scale data path benchmark: mlws demo, mlws pack, appliance import, against sha256sum.

Runs the real commands as an operator would, at field scale by default (20,000 items x 730 days,
14.6 M forecast rows), and prints a Markdown table. `sha256sum` reads the same pack file in the
same run, right before the import, so both read it from a warm page cache: the ratio compares
the import's verification stage (signature, tar checks, SHA-256 of every table while copying it
out, Parquet schema checks) with the stock tool's hashing alone.

It also measures what the hardening needs to know: the peak size of staging/ during an import
over the pack's size (the free-space factor the importer checks before it starts), and how long a
server worker's check of a version's files against its SHA256SUMS takes before it serves it.

With --series-cost, it imports the field-scale pack in this process with and without the series
answers (the forecast query's series columns taken out) and prints what they add to the import's
time and to the version's size.

With --scale (e.g. 1,5,10), it imports packs of that many times the field's items instead, each
into a fresh store with the default settings, and prints per scale the import's time, its peak
resident memory (the importer's own, from wait4), the store's peak and the version's size, and
where the time goes, against the goals: time linear in the rows, peak RSS within
APPLIANCE_IMPORT_MEMORY + 1 GB.

    python benchmarks/bench_import.py [--items 20000] [--days 730] [--workdir .bench/import]
    python benchmarks/bench_import.py --scale 1,5,10 [--runs 1] [--reuse-packs] [--workdir .bench/import-scale]
    python benchmarks/bench_import.py --series-cost [--runs 3] [--reuse-packs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import settings
from appliance.data import answers
from appliance.data.importer import FREE_SPACE_FACTOR, import_pack
from appliance.data.store import DataStore
from appliance.data.store_layout import VERSION_ANSWERS
from appliance.data.version_integrity import check_version
from appliance.trust.sshsig import load_allowed_signers

BIN = Path(sys.executable).parent
FIELD_WORKDIR = Path(".bench/import")
SCALE_WORKDIR = Path(".bench/import-scale")
RUNS = 3
STAGES = re.compile(
    r"verify (?P<verify>[\d.]+)s, build (?P<build>[\d.]+)s, publish (?P<publish>[\d.]+)s"
)
PROGRESS = re.compile(r"^\[\s*(?P<at>[\d.]+)s\] (?P<message>.*)$", re.MULTILINE)
# The import's progress lines that end each part of it, in order (see parts_of); BUILD_END is
# the end of its build stage as its last line reports it, None the last line.
BUILD_END = "build stage"
PARTS = (
    ("verify", "building "),
    ("load and check tables", "fact_metrics: "),
    ("keys, overview", "answers: "),
    ("timeseries and series", "series answers: "),
    ("inventory", "inventory answers: "),
    ("index, checkpoint", BUILD_END),
    ("seal", "publishing "),
    ("publish", None),
)
COPY_CHUNK = 1 << 20
RSS_SLACK = 10**9  # the goal: peak RSS <= APPLIANCE_IMPORT_MEMORY + 1 GB


@dataclass
class Row:
    """One line of the results table."""

    step: str
    seconds: float
    rows: int | None = None
    size: int | None = None

    def cells(self) -> list[str]:
        rate = f"{self.rows / self.seconds / 1e6:.2f} M rows/s" if self.rows else ""
        throughput = f"{self.size / self.seconds / 2**20:,.0f} MiB/s" if self.size else ""
        return [self.step, f"{self.seconds:.2f}", rate, throughput]


def timed(argv: list[str]) -> tuple[float, str]:
    """Run a command; (wall seconds, stderr). Exits on failure."""
    seconds, _peak, stderr = measured(argv)
    return seconds, stderr


def measured(argv: list[str]) -> tuple[float, int, str]:
    """Run a command; (wall seconds, its peak resident memory in bytes, stderr). Exits on failure.

    The peak is the command's own (wait4's ru_maxrss for that child alone, in KiB on Linux), so
    the commands run before it do not count.
    """
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if child.returncode != 0:
        sys.exit(f"benchmark: {' '.join(argv)} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024, stderr


def tree_bytes(root: Path) -> int:
    """Bytes allocated below `root` (what the disk gives up), 0 if it is gone."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_blocks * 512
            except FileNotFoundError:
                continue
    return total


class PeakSampler:
    """Samples the size of a folder every few milliseconds in a thread; keeps the peak."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, tree_bytes(self.folder))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tool(name: str) -> str:
    """Path of one of the project's commands in this venv."""
    return str(BIN / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument(
        "--workdir",
        type=Path,
        help=f"default {FIELD_WORKDIR}, with --scale or --series-cost {SCALE_WORKDIR}",
    )
    parser.add_argument("--scale", help="comma-separated multiples of --items, e.g. 1,5,10")
    parser.add_argument("--runs", type=int, help="imports per scale or variant (default 1 / 3)")
    parser.add_argument(
        "--series-cost", action="store_true", help="what the series answers add at --items"
    )
    parser.add_argument(
        "--reuse-packs", action="store_true", help="keep the packs of an earlier --scale run"
    )
    args = parser.parse_args()
    # Apart, so that the field run (which starts from an empty folder) keeps the packs at scale.
    scaled = args.workdir or SCALE_WORKDIR
    if args.series_cost:
        run_series_cost(args.items, args.days, scaled, args.runs or RUNS, args.reuse_packs)
    elif args.scale:
        scales = [int(s) for s in args.scale.split(",")]
        run_scales(scales, args.items, args.days, scaled, args.runs or 1, args.reuse_packs)
    else:
        run_field(args.items, args.days, args.workdir or FIELD_WORKDIR)


def make_key(work: Path) -> tuple[Path, Path]:
    """A fresh signing key in `work` and the allowed_signers file that trusts it."""
    key, signers = work / "key", work / "allowed_signers"
    key.unlink(missing_ok=True)
    line = subprocess.run(
        [tool("mlws"), "keygen", "--out", str(key), "--principal", "bench@mlws"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    signers.write_text(line)
    return key, signers


def make_pack(key: Path, items: int, days: int, tables: Path, pack: Path) -> tuple[float, float]:
    """mlws demo into `tables`, then mlws pack into `pack`; (demo seconds, pack seconds)."""
    demo, _ = timed(
        [tool("mlws"), "demo", "--out", str(tables), "--items", str(items), "--days", str(days)]
    )
    packing, _ = timed(
        [
            tool("mlws"),
            "pack",
            str(tables),
            "--key",
            str(key),
            "--dataset-id",
            "demo-telecom-spares",
            "--model-version",
            "demo-ensemble-1.0",
            "--source",
            "ensemble",
            "--out",
            str(pack),
        ]
    )
    return demo, packing


def run_field(items: int, days: int, work: Path) -> None:
    """The field-scale table: demo, pack, sha256sum and the import's stages, best of RUNS."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    key, signers = make_key(work)
    tables, pack, data = work / "tables", work / "field.pack", work / "data"

    results: list[Row] = []
    demo, packing = make_pack(key, items, days, tables, pack)
    forecast_rows = items * days
    results.append(Row("mlws demo", demo, forecast_rows))
    results.append(Row("mlws pack", packing, forecast_rows))
    size = pack.stat().st_size

    # Best of RUNS for both sides, each import into a fresh store (a second import would be a replay).
    sha_seconds = min(timed(["sha256sum", str(pack)])[0] for _ in range(RUNS))
    sha_row = Row("sha256sum (same pack)", sha_seconds, size=size)
    imports = []
    staging_peaks: list[int] = []
    for run in range(RUNS):
        store = data / f"run-{run}"
        argv = [tool("appliance"), "import", str(pack), "--data-dir", str(store)]
        # The whole store but versions/ of earlier runs: staging/ holds the build until publish.
        with PeakSampler(store) as sampler:
            whole, stderr = timed([*argv, "--signers", str(signers)])
        staging_peaks.append(sampler.peak)
        stages = STAGES.search(stderr)
        if stages is None:
            sys.exit(f"benchmark: no stage timings in the import output:\n{stderr}")
        imports.append((whole, {k: float(v) for k, v in stages.groupdict().items()}))
    seconds = min(whole for whole, _ in imports)
    verify, build, publish = (min(s[k] for _, s in imports) for k in ("verify", "build", "publish"))
    results.append(sha_row)
    results.append(Row("appliance import: verify", verify, forecast_rows, size))
    results.append(Row("appliance import: build", build, forecast_rows))
    results.append(Row("appliance import: publish", publish))
    results.append(Row("appliance import (whole command)", seconds, forecast_rows))

    print(
        f"{items:,} items x {days} days = {forecast_rows:,} forecast rows; pack {size / 2**20:,.1f} MiB\n"
    )
    print("| step | seconds | rows/s (forecast) | throughput |")
    print("| --- | ---: | ---: | ---: |")
    for row in results:
        print("| " + " | ".join(row.cells()) + " |")
    print(f"\nbest of {RUNS} runs for sha256sum and for each import stage")
    print(
        f"verification throughput / sha256sum throughput = {sha_row.seconds / verify:.2f} (goal >= 0.5)"
    )
    print(f"whole import = {seconds:.1f} s (goal <= 60 s)")

    report_space_and_check(data / "run-0" / "versions" / "v0001", max(staging_peaks), size)


def report_space_and_check(version: Path, peak: int, size: int) -> None:
    """Print the store's peak during an import and the cost of a worker's check of a version."""
    version_size = sum(p.stat().st_size for p in version.iterdir() if p.is_file())
    checks = []
    for _ in range(RUNS):
        started = time.perf_counter()
        outcome = check_version("v0001", version)
        checks.append(time.perf_counter() - started)
        if not outcome.ok:
            sys.exit(f"benchmark: the fresh version does not check out: {outcome.problems}")
    print(
        f"\npeak of the store during an import = {peak / 2**20:,.1f} MiB = {peak / size:.2f}x the pack"
    )
    print(f"free space the importer asks for before it starts = {FREE_SPACE_FACTOR}x the pack")
    print(
        f"a worker's check of the version before serving it (SHA-256 of {version_size / 2**20:,.1f} MiB,"
        f" warm page cache, best of {RUNS}) = {min(checks):.2f} s"
    )


@dataclass
class ScaleRun:
    """One import at one scale."""

    scale: int
    items: int
    rows: int
    pack_bytes: int
    seconds: float
    peak_rss: int
    store_peak: int
    version_bytes: int
    parts: dict[str, float]


def parts_of(stderr: str) -> dict[str, float]:
    """Seconds of each part of an import (PARTS), from the times of its progress lines."""
    lines = [(float(m["at"]), m["message"]) for m in PROGRESS.finditer(stderr)]
    parts: dict[str, float] = {}
    start = 0.0
    stages = STAGES.search(stderr)
    if stages is None:
        sys.exit(f"benchmark: no stage timings in the import output:\n{stderr}")
    for name, marker in PARTS:
        if marker is None:
            end = lines[-1][0]
        elif marker == BUILD_END:
            end = float(stages["verify"]) + float(stages["build"])
        else:
            ends = [at for at, message in lines if message.startswith(marker)]
            if not ends:
                sys.exit(f"benchmark: no progress line starting {marker!r}:\n{stderr}")
            end = ends[-1]
        parts[name] = end - start
        start = end
    return parts


def import_once(
    scale: int, items: int, days: int, pack: Path, signers: Path, store: Path
) -> ScaleRun:
    """Import `pack` into a fresh `store` with the default settings and measure it.

    The pack is read once first, so that every scale's verify stage reads a warm page cache (as
    the field table's does, after sha256sum): the stage measures the import, not the disk.
    """
    shutil.rmtree(store, ignore_errors=True)
    with pack.open("rb") as warm:
        while warm.read(COPY_CHUNK):
            pass
    argv = [tool("appliance"), "import", str(pack), "--data-dir", str(store)]
    with PeakSampler(store) as sampler:
        seconds, peak_rss, stderr = measured([*argv, "--signers", str(signers)])
    version = store / "versions" / "v0001"
    version_bytes = sum(p.stat().st_size for p in version.iterdir() if p.is_file())
    run = ScaleRun(
        scale,
        items,
        items * days,
        pack.stat().st_size,
        seconds,
        peak_rss,
        sampler.peak,
        version_bytes,
        parts_of(stderr),
    )
    shutil.rmtree(store)  # a 10x version is several GB
    return run


def scale_pack(packs: Path, items: int, days: int) -> tuple[Path, Path]:
    """The pack of `items` x `days` in `packs` (made if missing) and the signers that trust it."""
    packs.mkdir(parents=True, exist_ok=True)
    key, signers = packs / "key", packs / "allowed_signers"
    if not (key.exists() and signers.exists()):
        key, signers = make_key(packs)
    pack = packs / f"{items}x{days}.pack"
    if not pack.exists():
        tables = packs / f"{items}x{days}-tables"
        make_pack(key, items, days, tables, pack)
        shutil.rmtree(tables)  # the pack holds them; a 10x demo is about 1 GB
    return pack, signers


def run_scales(
    scales: list[int], items: int, days: int, work: Path, runs: int, reuse_packs: bool
) -> None:
    """Import packs of `scales` x `items` items, each `runs` times; print the scaling tables."""
    packs = work / "packs"
    if not reuse_packs:
        shutil.rmtree(packs, ignore_errors=True)
    best: list[ScaleRun] = []
    for scale in scales:
        count = items * scale
        pack, signers = scale_pack(packs, count, days)
        done = [import_once(scale, count, days, pack, signers, work / "store") for _ in range(runs)]
        fastest = min(done, key=lambda r: r.seconds)
        fastest.peak_rss = max(r.peak_rss for r in done)  # the worst peak of the runs
        fastest.store_peak = max(r.store_peak for r in done)
        best.append(fastest)
    print_scales(best, days, runs)


def print_scales(best: list[ScaleRun], days: int, runs: int) -> None:
    """The time and memory table, where the time goes, and the goals."""
    budget = settings.IMPORT_MEMORY.default
    print(f"appliance import with the default settings ({settings.IMPORT_MEMORY.env}={budget})")
    print(f"{days} days per item; best of {runs} run(s) for the time, worst for the peaks\n")
    print(
        "| scale | items | forecast rows | pack MiB | import s | s per M rows | peak RSS GB "
        "| store peak / pack | version MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in best:
        cells = [
            f"{r.scale}x",
            f"{r.items:,}",
            f"{r.rows:,}",
            f"{r.pack_bytes / 2**20:,.1f}",
            f"{r.seconds:.1f}",
            f"{r.seconds / (r.rows / 1e6):.2f}",
            f"{r.peak_rss / 1e9:.2f}",
            f"{r.store_peak / r.pack_bytes:.2f}",
            f"{r.version_bytes / 2**20:,.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    names = [name for name, _ in PARTS]
    print("\nseconds per part of the import (from its progress lines)\n")
    print("| scale | " + " | ".join(names) + " |")
    print("| ---: |" + " ---: |" * len(names))
    for r in best:
        print(f"| {r.scale}x | " + " | ".join(f"{r.parts[n]:.1f}" for n in names) + " |")
    limit = memory_bytes(budget) + RSS_SLACK
    worst = max(r.peak_rss for r in best)
    print(
        f"\nlargest peak RSS = {worst / 1e9:.2f} GB (goal <= {budget} + 1 GB = {limit / 1e9:.2f} GB)"
    )
    base = best[0]
    for r in best[1:]:
        ratio = r.seconds / base.seconds
        goal = 1.2 * r.scale / base.scale
        print(
            f"{r.scale}x time / {base.scale}x time = {ratio:.2f} "
            f"(rows {r.rows / base.rows:.0f}x; goal for 10x: <= 12, i.e. <= {goal:.1f} here)"
        )


@contextlib.contextmanager
def without_series() -> Iterator[None]:
    """Builds in this process make no series answers: the forecast query without its columns."""
    query, kinds = answers.QUERY_SQL[answers.TIMESERIES], answers.ANSWERS[answers.TIMESERIES]
    plan = answers.plan_answers

    def plan_without_series(con: Any, max_rows: int) -> answers.AnswerPlan:
        return answers.AnswerPlan(plan(con, max_rows).ranges, series_bytes=0)

    answers.QUERY_SQL[answers.TIMESERIES] = (
        f"SELECT item_id, {answers.TIMESERIES_BODY_SQL} {answers.FORECAST_DAYS_SQL}"
    )
    answers.ANSWERS[answers.TIMESERIES] = kinds[:1]
    answers.plan_answers = plan_without_series
    try:
        yield
    finally:
        answers.QUERY_SQL[answers.TIMESERIES], answers.ANSWERS[answers.TIMESERIES] = query, kinds
        answers.plan_answers = plan


def run_series_cost(items: int, days: int, work: Path, runs: int, reuse_packs: bool) -> None:
    """Import the pack in this process with and without series answers; print the difference."""
    packs = work / "packs"
    if not reuse_packs:
        shutil.rmtree(packs, ignore_errors=True)
    pack, signers = scale_pack(packs, items, days)
    trusted = load_allowed_signers(signers)
    variants: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "with series": contextlib.nullcontext,
        "without series": without_series,
    }
    measured_runs: dict[str, tuple[float, float, int, int]] = {}
    for name, variant in variants.items():
        seconds: list[tuple[float, float]] = []
        for run in range(runs):
            store = work / "cost" / f"{run}"
            shutil.rmtree(store, ignore_errors=True)
            started = time.perf_counter()
            with variant():
                result = import_pack(DataStore(store), pack, trusted)
            seconds.append((time.perf_counter() - started, result.seconds["build"]))
            version = store / "versions" / result.vid
            size = sum(p.stat().st_size for p in version.iterdir() if p.is_file())
            answers_size = (version / VERSION_ANSWERS).stat().st_size
            shutil.rmtree(store)
        whole, build = min(s[0] for s in seconds), min(s[1] for s in seconds)
        measured_runs[name] = (whole, build, size, answers_size)
    print(f"{items:,} items x {days} days, in-process imports, best of {runs}\n")
    print("| build | import s | build stage s | version MiB | answers.bin MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (whole, build, size, answers_size) in measured_runs.items():
        print(
            f"| {name} | {whole:.1f} | {build:.1f} | {size / 2**20:,.0f} | {answers_size / 2**20:,.0f} |"
        )
    (w1, b1, s1, _), (w0, b0, s0, _) = measured_runs.values()
    print(
        f"\nthe series add {w1 - w0:.1f} s to the import ({(w1 - w0) / w0:.0%}), "
        f"{b1 - b0:.1f} s of it in the build, and {(s1 - s0) / 2**20:,.0f} MiB to the version "
        f"({(s1 - s0) / s0:.0%})"
    )


def memory_bytes(size: str) -> int:
    """Bytes of a DuckDB memory size such as 4GB (decimal units) or 4GiB (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", size, re.IGNORECASE)
    if match is None:
        sys.exit(f"benchmark: {size!r} is not a memory size")
    number, prefix, binary = match.groups()
    power = " KMGT".index(prefix.upper() or " ")
    return int(float(number) * (1024 if binary else 1000) ** power)


if __name__ == "__main__":
    main()
