"""Where one request's time goes inside a worker: the request edge and app driven in process.

No sockets and no Granian: each request is an ASGI call of the same `server.asgi.app` stack a
worker runs (the request edge around Litestar), over a real data store, so the figures are the
Python side of a request alone. For each scenario it prints the microseconds per request with
the fast path on and off and, with --profile, the functions that take the time (cProfile,
sorted by own time). The wrk figures of benchmarks/bench_server.py add Granian's side (HTTP
parsing, the event loop's I/O) on top of these.

    python benchmarks/profile_request.py --data-dir DIR --signers FILE [--requests 20000]
        [--profile] [--only timeseries,range,search,...]

The data dir is a store made by `appliance import` (bench_server.py keeps one in
.bench/server/scale-1/ours-data). Progress goes to stderr; the table, in Markdown, to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

Message = dict[str, Any]
SCENARIOS = {
    "timeseries": ("/api/v1/items/{item}/timeseries", ""),
    "inventory": ("/api/v1/inventory/{item}", ""),
    "range": ("/api/v1/items/{item}/timeseries", "from={start}&to={end}"),
    "search": ("/api/v1/items", "q={item}"),
    "listing": ("/api/v1/items", "limit=50&sort=risk"),
    "summary": ("/api/v1/forecasts/summary", ""),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--signers", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top lines")
    parser.add_argument("--fast-path", choices=["both", "on", "off"], default="both")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    modes = ["on", "off"] if args.fast_path == "both" else [args.fast_path]
    print("| scenario | fast path | us per request |")
    print("| --- | --- | ---: |")
    for mode in modes:
        # One process per mode: the settings are read once, when the app is made.
        argv = [sys.executable, __file__, "--child", mode, str(args.data_dir), str(args.signers)]
        argv += [str(args.requests), ",".join(chosen), "1" if args.profile else "0"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        sys.stderr.write(result.stderr)
        if result.returncode != 0:
            sys.exit(f"error: the {mode} run failed (exit {result.returncode})")
        sys.stdout.write(result.stdout)


def child(
    mode: str, data_dir: str, signers: str, requests: int, names: list[str], profile: bool
) -> None:
    os.environ.update(
        APPLIANCE_DATA_DIR=data_dir,
        APPLIANCE_SIGNERS=signers,
        APPLIANCE_RATE_LIMIT="10000000",  # counted, out of the way, as in bench_server.py
        APPLIANCE_FAST_PATH="1" if mode == "on" else "0",
    )
    from server import asgi  # after the settings are in the environment

    asyncio.run(drive(asgi.app, asgi.litestar_app, mode, requests, names, profile))


async def drive(
    edge: Callable[..., Coroutine[Any, Any, None]],
    app: Any,
    mode: str,
    requests: int,
    names: list[str],
    profile: bool,
) -> None:
    lifespan: asyncio.Queue[Message] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})
    started: list[Message] = []

    async def lifespan_send(message: Message) -> None:
        started.append(message)

    task = asyncio.create_task(edge({"type": "lifespan", "state": {}}, lifespan.get, lifespan_send))
    while not started:
        await asyncio.sleep(0.01)
    handle = app.state.runtime.data.current()
    if handle is not None and handle.wait_for_items(timeout=120) and handle.items is not None:
        handle.items.wait_for_grams(timeout=120)  # measured as a worker serves once warm
    if handle is None or handle.items is None:
        sys.exit("error: the data dir has no imported version with an item index")
    items = [item.item_id for item in handle.items.items]
    days = handle.series(items[0], None, None).dates if handle.has_series() else []
    chooser = random.Random(7)  # noqa: S311 (which items to ask for, not a secret)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    sink = io.StringIO()
    saved, sys.stderr = sys.stderr, sink  # the request log: not part of what is shown
    for name in names:
        scopes = [request_scope(name, chooser, items, days) for _ in range(requests)]
        for warm in scopes[: min(2000, requests)]:
            await edge(dict(warm, state={}), receive, send)
        statuses.clear()
        profiler = cProfile.Profile() if profile else None
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for each in scopes:
            await edge(each, receive, send)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - began
        sink.seek(0)
        sink.truncate()
        bad = [status for status in statuses if status != 200]
        if bad:
            sys.stderr = saved
            sys.exit(f"error: {name}: {len(bad)} answers were not 200 (first {bad[0]})")
        print(f"| {name} | {mode} | {seconds / requests * 1e6:.1f} |", flush=True)
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            print(f"\n<details><summary>{name}, fast path {mode}</summary>\n\n```")
            print(out.getvalue().strip())
            print("```\n</details>\n", flush=True)
    await lifespan.put({"type": "lifespan.shutdown"})
    await task
    sys.stderr = saved


def request_scope(name: str, chooser: random.Random, items: list[str], days: list[str]) -> Message:
    """The ASGI scope of one request of scenario `name`, for a random item (and window)."""
    path, query = SCENARIOS[name]
    values = {"item": chooser.choice(items)}
    if days:
        start = chooser.randrange(max(1, len(days) - 60))
        values |= {"start": days[start], "end": days[min(len(days) - 1, start + 59)]}
    path, query = path.format(**values), query.format(**values)
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"accept-encoding", b"gzip"),
                    (b"user-agent", b"profile_request")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080), "state": {},
    }  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, mode, data_dir, signers, requests, names, profile = sys.argv
        child(mode, data_dir, signers, int(requests), names.split(","), profile == "1")
    else:
        main()
