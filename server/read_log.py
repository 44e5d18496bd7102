"""What a worker logs of the reads it answers: a few in full each second, every one counted.

At full load a node answers tens of thousands of reads a second; a JSON line for each would be
gigabytes of journal an hour and a large part of what each answer costs. So the request edge
logs:

- in full, always: every request that is not a successful read (a status other than 200 or
  304, a method other than GET or HEAD, a body cut short), and every read slower than
  SLOW_SECONDS;
- in full, up to APPLIANCE_LOG_READS a second per worker: the successful reads (at a site's
  usual load that is every one of them);
- one `reads` line per worker and WINDOW_SECONDS, counting every other successful read of the
  window by method, route and status, with the slowest one's duration. A window ends early when
  the data version changes, so each `reads` line names the one version its data reads were
  served from (reads of no version, such as health probes, are counted in whichever window).
  The line of a window is written by the first read after it, or when the worker stops.

Every line written carries data_version, dataset_id and model_version; /metrics counts every
request exactly. docs/performance.md gives the journal volume at full load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 10.0
SLOW_SECONDS = 0.5
SUCCESS = (200, 304)

Version = tuple[Any, Any, Any]  # data_version, dataset_id, model_version


@dataclass
class ReadTally:
    """One worker's count of its successful reads, and its budget of reads logged in full."""

    per_second: int
    window_seconds: float = WINDOW_SECONDS
    _second: int = -1
    _left: int = 0
    _started: float | None = None
    _version: Version = (None, None, None)
    _routes: dict[str, int] = field(default_factory=dict)
    _reads: int = 0
    _logged: int = 0
    _slowest: float = 0.0

    def in_full(self, now: float) -> bool:
        """Whether this successful read gets a line of its own (and is noted as logged)."""
        second = int(now)
        if second != self._second:
            self._second, self._left = second, self.per_second
        if self._left <= 0:
            return False
        self._left -= 1
        self._logged += 1
        return True

    def count(
        self, now: float, method: str, route: str, status: int, seconds: float, version: Version
    ) -> dict[str, Any] | None:
        """Count one successful read; the `reads` line of a window that ended, if one did."""
        ended = None
        started = now if self._started is None else self._started
        # A read of no version (health, metrics, the dashboard's files) fits in any window.
        other = version[0] is not None and self._version[0] not in (None, version[0])
        if self._reads and (other or now - started >= self.window_seconds):
            ended = self.close(now)
        if not self._reads:
            self._started, self._version = now, (None, None, None)
        if version[0] is not None:
            self._version = version
        key = f"{method} {route} {status}"
        self._routes[key] = self._routes.get(key, 0) + 1
        self._reads += 1
        self._slowest = max(self._slowest, seconds)
        return ended

    def close(self, now: float | None = None) -> dict[str, Any] | None:
        """The `reads` line of the window so far (None if it counted nothing), and a new window."""
        if not self._reads:
            return None
        now = time.monotonic() if now is None else now
        data_version, dataset_id, model_version = self._version
        line = {
            "window_s": round(now - (now if self._started is None else self._started), 3),
            "reads": self._reads,
            "logged": min(self._logged, self._reads),
            "routes": dict(sorted(self._routes.items())),
            "max_ms": round(self._slowest * 1000, 3),
            "data_version": data_version,
            "dataset_id": dataset_id,
            "model_version": model_version,
        }
        self._routes, self._reads, self._logged, self._slowest = {}, 0, 0, 0.0
        self._started = None
        return line
