"""The response cache: a small in-memory layer per worker over diskcache shared by all workers.

Keys start with the data version, so a new version never sees an old answer and nothing needs
invalidating. Keys are text and values bytes, and nothing else goes in or comes out: diskcache
unpickles any row stored in its pickle mode (CVE-2025-69872), so `BytesOnlyDisk` makes that path
unreachable, even for a row planted in the cache's SQLite file by someone else.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN

MEMORY_BYTES = 32 << 20  # per worker: the hot answers (summaries, first pages) stay in memory
# The only names diskcache gives the files of large values (Disk.filename): ab/cd/<28 hex>.val.
VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")

log = logging.getLogger(__name__)


class UnsafeCacheRow(ValueError):
    """A cache row that is not text key and bytes value: planted or foreign, never decoded."""


class BytesOnlyDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """diskcache's storage with pickle unreachable: text keys, bytes values, value files by name.

    Every way a row turns into a Python object goes through these four methods, so a row in
    pickle (or text) mode is refused before its content is looked at, and a value file outside
    diskcache's own naming scheme is neither read nor removed.
    """

    def put(self, key: object) -> tuple[Any, bool]:
        """The database key of a text key (stored as it is, never pickled)."""
        if type(key) is not str:
            msg = f"cache keys are text, not {type(key).__name__}"
            raise TypeError(msg)
        return key, True

    def get(self, key: object, raw: bool) -> str:
        """A key read back from the database: text stored raw, or refused."""
        if not raw or type(key) is not str:
            msg = "a cache key that is not raw text"
            raise UnsafeCacheRow(msg)
        return key

    def store(self, value: object, read: bool, key: object = UNKNOWN) -> tuple[Any, ...]:
        """The columns of a bytes value: in the row when small, in a value file when large."""
        if read or type(value) is not bytes:
            msg = f"cache values are bytes, not {type(value).__name__}"
            raise TypeError(msg)
        return super().store(value, False, key)  # type: ignore[no-any-return]

    def fetch(self, mode: int, filename: str | None, value: object, read: bool) -> bytes:
        """A value read back: bytes from the row or from a value file, or refused."""
        if not read and mode == MODE_RAW and type(value) is bytes:
            return value
        if not read and mode == MODE_BINARY and value is None and self._own_file(filename):
            return super().fetch(mode, filename, None, False)  # type: ignore[no-any-return]
        msg = f"a cache row in mode {mode} that is not raw bytes"
        raise UnsafeCacheRow(msg)

    def remove(self, file_path: str) -> None:
        """Remove a value file, if it is one of ours (a planted row may name any file)."""
        if self._own_file(file_path):
            super().remove(file_path)

    @staticmethod
    def _own_file(filename: str | None) -> bool:
        return filename is not None and VALUE_FILE.fullmatch(filename) is not None


class ResponseCache:
    """Encoded responses by (version, request): memory first, then the shared disk cache."""

    def __init__(self, directory: Path, size_limit: int, memory_bytes: int = MEMORY_BYTES) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # the cache may hold answers a viewer token protects
        self._disk = diskcache.Cache(str(directory), size_limit=size_limit, disk=BytesOnlyDisk)
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
        try:
            value = self._disk.get(key)
        except UnsafeCacheRow as exc:
            # A miss: the answer is computed again and its row replaces this one.
            log.warning("refused a cache row of %r: %s", key, exc)
            return None
        if isinstance(value, bytes):
            self._remember(key, value)
            return value
        return None

    def in_memory(self, key: str) -> bytes | None:
        """The body for `key` if this worker holds it in memory (no disk read)."""
        with self._lock:
            body = self._memory.get(key)
            if body is not None:
                self._memory.move_to_end(key)
            return body

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
