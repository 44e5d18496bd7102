"""Dashboard first render in Debian's Chromium, at `make demo` scale, and the JS+CSS budget.

Makes the demo data as `make demo` does (200 items x 365 days by default, generated now), signs
and imports it, starts the real server (`appliance serve`, 2 workers) on a loopback port and
opens the overview RUNS times, each in a fresh browser context (empty cache and storage: a first
visit). One visit before them warms the server and the browser process; it is reported apart.

First render = from the navigation start to the moment the KPI cards and the risk rows are both
in the DOM. It is timed inside the page: a MutationObserver, installed before any script of the
page runs, reads performance.now() (whose origin is the navigation start) when both appear, and
again in the next animation frame (painted). Prints a Markdown table on stdout; progress goes to
stderr. Goal (issue): first render <= 1 s on this machine with the demo data.

The other pages are timed the same way, each opened as a first visit: the items page (its first
50 rows), an item (both charts drawn: their canvases in the DOM) and the revisions page (its item
rows; a second pack, generated a day later as `make demo` run the next day makes, is imported
for it).

    python benchmarks/bench_dashboard.py [--items 200] [--days 365] [--runs 10]
        [--workdir .bench/dashboard]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Browser, ViewportSize, sync_playwright

from server.app import DASHBOARD_DIR

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright's own browser download is never used
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-quic",
)
VIEWPORT: ViewportSize = {"width": 1366, "height": 768}
WORKERS = 2
READY_DEADLINE_SECONDS = 60.0
RENDER_TIMEOUT_MS = 30_000
FIRST_RENDER_GOAL_MS = 1_000.0
JS_CSS_BUDGET = 100_000  # bytes of gzip -9, as tests/browser checks it

# Each page timed, with what must be in its DOM for it to count as rendered.
PAGES = {
    "overview": ("#/", ['[data-testid="kpi-card"]', '[data-testid="risk-row"]']),
    "items": ("#/items", ['[data-testid="item-row"]']),
    "item": ("#/items/IT-0000001", ['[data-testid="forecast-chart"] canvas', '[data-testid="inventory-chart"] canvas']),
    "revisions": ("#/revisions", ['[data-testid="revision-row"]']),
}  # fmt: skip

# Runs before the page's own scripts: notes when the page's elements are first in the DOM.
FIRST_RENDER_PROBE = """(() => {
  const ready = () => SELECTORS.every((selector) => document.querySelector(selector));
  const observer = new MutationObserver(() => {
    if (window.__firstRender !== undefined || !ready()) return;
    window.__firstRender = performance.now();
    observer.disconnect();
    requestAnimationFrame(() => { window.__firstFrame = performance.now(); });
  });
  observer.observe(document, { childList: true, subtree: true });
})();"""
TIMINGS = """() => {
  const navigation = performance.getEntriesByType("navigation")[0];
  return {
    "index.html received": navigation.responseEnd,
    "DOMContentLoaded": navigation.domContentLoadedEventEnd,
    "KPI cards + risk rows in the DOM": window.__firstRender,
    "... and painted (next frame)": window.__firstFrame,
  };
}"""
FIRST_RENDER = "KPI cards + risk rows in the DOM"  # the overview's; the same key for every page


class BenchmarkError(Exception):
    """The benchmark cannot run or a step failed."""


def progress(message: str) -> None:
    """Progress line on stderr, so stdout stays the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def tool(name: str, *argv: str | Path) -> str:
    """Run one of the project's commands from this venv; its stdout. Raises on failure."""
    command = [str(BIN / name), *map(str, argv)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr.strip()}"
        raise BenchmarkError(msg)
    return done.stdout


def make_store(work: Path, items: int, days: int) -> tuple[Path, Path]:
    """Demo tables -> signed pack -> imported store, as `make demo` does, on two days (yesterday's
    pack, then today's, so the revisions page has something to compare); (data dir, signers)."""
    key, signers = work / "signing-key", work / "allowed_signers"
    signers.write_text(tool("mlws", "keygen", "--out", key, "--principal", "demo@mlws"))
    data = work / "data"
    now = datetime.now(UTC).replace(microsecond=0)
    for name, generated in (("yesterday", now - timedelta(days=1)), ("today", now)):
        tables, pack = work / f"tables-{name}", work / f"demo-{name}.pack"
        progress(f"mlws demo: {items} items x {days} days, generated {name}")
        tool("mlws", "demo", "--out", tables, "--items", str(items), "--days", str(days),
             "--generated-at", generated.strftime("%Y-%m-%dT%H:%M:%SZ"))  # fmt: skip
        tool("mlws", "pack", tables, "--key", key, "--dataset-id", "demo-telecom-spares",
             "--model-version", "demo-ensemble-1.0", "--source", "ensemble", "--out", pack)  # fmt: skip
        progress("appliance import")
        tool("appliance", "import", pack, "--data-dir", data, "--signers", signers)
    return data, signers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> int | None:
    """The HTTP status of a GET on `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextlib.contextmanager
def serving(data: Path, signers: Path, log: Path) -> Iterator[str]:
    """`appliance serve` on a free loopback port until ready; its base URL. Always stopped."""
    port = free_port()
    argv = [str(BIN / "appliance"), "serve", "--data-dir", str(data), "--signers", str(signers),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + READY_DEADLINE_SECONDS
            while answers(f"{base}/health/ready") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = f"the server did not get ready; see {log}"
                    raise BenchmarkError(msg)
                time.sleep(0.05)
            yield base
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def visit(browser: Browser, base: str, page_name: str = "overview") -> dict[str, float]:
    """Open a page in a fresh context; the page's own timings, in ms since navigation start."""
    route, selectors = PAGES[page_name]
    context = browser.new_context(viewport=VIEWPORT)
    try:
        context.add_init_script(FIRST_RENDER_PROBE.replace("SELECTORS", json.dumps(selectors)))
        page = context.new_page()
        page.goto(f"{base}/{route}")
        page.wait_for_function("() => window.__firstFrame !== undefined", timeout=RENDER_TIMEOUT_MS)
        timings: dict[str, float] = page.evaluate(TIMINGS)
        return timings
    finally:
        context.close()


def nearest_rank(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with `fraction` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def gzipped_sizes(dist: Path) -> dict[str, int]:
    """The gzip -9 size of every .js and .css file under `dist`, by path relative to it."""
    return {
        path.relative_to(dist).as_posix(): len(gzip.compress(path.read_bytes(), compresslevel=9))
        for path in sorted(dist.rglob("*"))
        if path.suffix in {".js", ".css"} and path.is_file()
    }


def report_pages(pages: dict[str, list[dict[str, float]]]) -> None:
    """The first render of each page: the same measure, each page opened as a first visit."""
    print("\n| page (first visit, fresh context) | route | median | p90 | max |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, runs in pages.items():
        values = [run[FIRST_RENDER] for run in runs]
        cells = [statistics.median(values), nearest_rank(values, 0.9), max(values)]
        print(f"| {name} | `{PAGES[name][0]}` | " + " | ".join(f"{v:,.0f}" for v in cells) + " |")


def report(runs: list[dict[str, float]], items: int, days: int, version: str) -> None:
    """The Markdown table of timings, the asset sizes, and the goals."""
    print(f"{items:,} items x {days} days; Chromium {version}; {len(runs)} runs, each in a fresh "
          "context, after one warm-up visit; ms since navigation start\n")  # fmt: skip
    print("| measure | min | median | p90 | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for measure in runs[0]:
        values = [run[measure] for run in runs]
        cells = [min(values), statistics.median(values), nearest_rank(values, 0.9), max(values)]
        print(f"| {measure} | " + " | ".join(f"{value:,.0f}" for value in cells) + " |")
    sizes = gzipped_sizes(DASHBOARD_DIR)
    total = sum(sizes.values())
    print("\n| file (server/frontend/dist) | gzip -9 bytes |")
    print("| --- | ---: |")
    for name, size in sizes.items():
        print(f"| {name} | {size:,} |")
    print(f"| **total JS+CSS** | **{total:,}** |")
    first = [run[FIRST_RENDER] for run in runs]
    print(f"\nfirst render: median {statistics.median(first):,.0f} ms, max {max(first):,.0f} ms "
          f"(goal <= {FIRST_RENDER_GOAL_MS:,.0f} ms)")  # fmt: skip
    print(f"JS+CSS: {total:,} bytes gzip -9 (budget <= {JS_CSS_BUDGET:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path(".bench/dashboard"))
    args = parser.parse_args()
    if not (DASHBOARD_DIR / "index.html").is_file():
        sys.exit(f"benchmark: {DASHBOARD_DIR / 'index.html'} is missing: build the dashboard first")
    if not CHROMIUM.exists():
        sys.exit(f"benchmark: {CHROMIUM} is missing (apt-get install chromium)")

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    try:
        data, signers = make_store(args.workdir, args.items, args.days)
        with serving(data, signers, args.workdir / "server.log") as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            cold = visit(browser, base)[FIRST_RENDER]
            progress(f"warm-up: first visit after the server started: {cold:.0f} ms")
            runs = []
            for number in range(1, args.runs + 1):
                runs.append(visit(browser, base))
                progress(f"run {number}: {runs[-1][FIRST_RENDER]:.0f} ms")
            pages = {"overview": runs}
            for name in PAGES:
                if name != "overview":
                    visit(browser, base, name)  # its first request warms the server's answer
                    pages[name] = [visit(browser, base, name) for _ in range(args.runs)]
                    progress(
                        f"{name}: {statistics.median(r[FIRST_RENDER] for r in pages[name]):.0f} ms"
                    )
            version = browser.version
            browser.close()
    except BenchmarkError as exc:
        sys.exit(f"benchmark: {exc}")
    report(runs, args.items, args.days, version)
    report_pages(pages)
    print(
        f"warm-up (not in the table): first visit on a server that had just started, {cold:,.0f} ms"
    )


if __name__ == "__main__":
    main()
