"""JSON-lines logs on stderr: one object per line, cheap enough for every request."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    """Writes events at or above a level as single JSON lines."""

    def __init__(self, level: str, worker: int) -> None:
        self.threshold = LEVELS[level]
        self.worker = worker

    def event(self, level: str, message: str, **fields: Any) -> None:
        """Log one event with its fields (never tokens: callers pass only what may be read)."""
        if LEVELS[level] < self.threshold:
            return
        record = {
            "ts": round(time.time(), 3),
            "level": level,
            "msg": message,
            "worker": self.worker,
        } | fields
        sys.stderr.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        sys.stderr.flush()
