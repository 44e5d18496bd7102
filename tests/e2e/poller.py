"""Availability probe run inside the simulated node during an upgrade (standard library only).

    python3 poller.py URL OUT STOPFILE

GETs URL every 50 ms, each on a new connection, until STOPFILE exists, then writes OUT as JSON:
the number of requests, how many failed (an error, a timeout or a status other than 200), the
failed windows (start, end) in seconds since the first request, the longest time a request that
succeeded took (its wait: connect, queue and answer) and when it started, and the first failures'
reasons. A window is a run of consecutive failures; its length is from the last success before
it to the first success after it, so a 0 s gap is impossible to report.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

INTERVAL_SECONDS = 0.05
TIMEOUT_SECONDS = 10.0  # a request held longer is a failure, not a wait
MAX_SECONDS = 900.0
REASONS_KEPT = 10


def ask(url: str) -> str:
    """'' if URL answered 200, else why not (one line)."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 (the caller gives an http URL on loopback)
            answer.read()
            return "" if answer.status == 200 else f"status {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"status {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def main(url: str, out: Path, stop: Path) -> None:
    started = time.monotonic()
    last_ok = 0.0
    failing_since: float | None = None
    windows: list[tuple[float, float]] = []
    reasons: list[str] = []
    requests = failures = 0
    longest, longest_at = 0.0, 0.0
    while not stop.exists() and time.monotonic() - started < MAX_SECONDS:
        now = time.monotonic() - started
        requests += 1
        reason = ask(url)
        done = time.monotonic() - started
        if not reason:
            if done - now > longest:
                longest, longest_at = done - now, now
            if failing_since is not None:
                windows.append((failing_since, done))
                failing_since = None
            last_ok = done
        else:
            failures += 1
            if len(reasons) < REASONS_KEPT:
                reasons.append(f"{now:.3f}s: {reason}")
            if failing_since is None:
                failing_since = last_ok if requests > 1 else now
        time.sleep(INTERVAL_SECONDS)
    report = {
        "requests": requests,
        "failures": failures,
        "windows": windows,
        "still_failing": failing_since is not None,
        "longest_wait_seconds": round(longest, 3),
        "longest_wait_at": round(longest_at, 3),
        "seconds": round(time.monotonic() - started, 3),
        "reasons": reasons,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
