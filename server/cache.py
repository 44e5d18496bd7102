"""The response cache shared by every worker: diskcache on local disk, bytes only.

Keys start with the data version, so a new version never sees an old answer; values are bytes
(diskcache stores bytes as they are; it would pickle other objects, which we never want to load).
"""

from __future__ import annotations

from pathlib import Path

import diskcache


class ResponseCache:
    """Encoded responses by (version, request), capped in size, least recently stored out first."""

    def __init__(self, directory: Path, size_limit: int) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # the cache may hold answers a viewer token protects
        self._cache = diskcache.Cache(str(directory), size_limit=size_limit)

    def get(self, key: str) -> bytes | None:
        """The cached body for `key`, or None."""
        value = self._cache.get(key)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, body: bytes) -> None:
        """Remember a body (bytes only)."""
        self._cache.set(key, bytes(body))

    def close(self) -> None:
        """Close the cache's database handle."""
        self._cache.close()
