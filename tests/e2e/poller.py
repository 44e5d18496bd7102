"""Availability probe run inside the simulated node during an upgrade (standard library only).

    python3 poller.py URL OUT STOPFILE

GETs URL every 50 ms until STOPFILE exists, then writes OUT as JSON: the number of requests,
how many failed, and the failed windows (start, end) in seconds since the first request. A
window is a run of consecutive failures; its length is from the last success before it to the
first success after it, so a 0 s gap is impossible to report.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

INTERVAL_SECONDS = 0.05
TIMEOUT_SECONDS = 2.0
MAX_SECONDS = 900.0


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 (the caller gives an http URL on loopback)
            answer.read()
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(url: str, out: Path, stop: Path) -> None:
    started = time.monotonic()
    last_ok = 0.0
    failing_since: float | None = None
    windows: list[tuple[float, float]] = []
    requests = failures = 0
    while not stop.exists() and time.monotonic() - started < MAX_SECONDS:
        now = time.monotonic() - started
        requests += 1
        if ok(url):
            if failing_since is not None:
                windows.append((failing_since, time.monotonic() - started))
                failing_since = None
            last_ok = time.monotonic() - started
        else:
            failures += 1
            if failing_since is None:
                failing_since = last_ok if requests > 1 else now
        time.sleep(INTERVAL_SECONDS)
    report = {
        "requests": requests,
        "failures": failures,
        "windows": windows,
        "still_failing": failing_since is not None,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
