"""The response cache: a small in-memory layer per worker over diskcache shared by all workers.

Keys start with the data version, so a new version never sees an old answer and nothing needs
invalidating. Values are bytes only (diskcache stores bytes as they are; it would pickle other
objects, which we never want to load back).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from threading import Lock

import diskcache

MEMORY_BYTES = 32 << 20  # per worker: the hot answers (summaries, first pages) stay in memory


class ResponseCache:
    """Encoded responses by (version, request): memory first, then the shared disk cache."""

    def __init__(self, directory: Path, size_limit: int, memory_bytes: int = MEMORY_BYTES) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # the cache may hold answers a viewer token protects
        self._disk = diskcache.Cache(str(directory), size_limit=size_limit)
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = 0
        self._memory_limit = memory_bytes
        self._lock = Lock()

    def get(self, key: str) -> bytes | None:
        """The cached body for `key`, or None."""
        with self._lock:
            body = self._memory.get(key)
            if body is not None:
                self._memory.move_to_end(key)
                return body
        value = self._disk.get(key)
        if isinstance(value, bytes):
            self._remember(key, value)
            return value
        return None

    def set(self, key: str, body: bytes) -> None:
        """Remember a body (bytes only) in memory and on disk."""
        body = bytes(body)
        self._disk.set(key, body)
        self._remember(key, body)

    def _remember(self, key: str, body: bytes) -> None:
        if len(body) > self._memory_limit // 8:
            return  # large answers stay on disk only
        with self._lock:
            previous = self._memory.pop(key, None)
            self._memory_bytes -= len(previous) if previous is not None else 0
            self._memory[key] = body
            self._memory_bytes += len(body)
            while self._memory_bytes > self._memory_limit:
                _, evicted = self._memory.popitem(last=False)
                self._memory_bytes -= len(evicted)

    def close(self) -> None:
        """Close the disk cache's database handle."""
        self._disk.close()
