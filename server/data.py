"""What one server worker serves: the current data version, opened read-only, swapped live.

Each worker notices a new `current` by reading the symlink at most every CHECK_SECONDS (or at
once on POST /data/refresh). A request leases the version it started with; a replaced version is
closed when its last lease ends, so no in-flight request fails when the data changes.
"""

from __future__ import annotations

import json
import mmap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from appliance import store_layout as layout
from appliance.answers import INDEX_TABLE, KINDS
from appliance.errors import StoreError
from appliance.store import DataStore
from appliance.version_build import META_TABLE

CHECK_SECONDS = 0.25


class VersionHandle:
    """One published version opened by this worker: its database, answers and identity."""

    def __init__(self, vid: str, path: Path, memory_limit: str, threads: int) -> None:
        self.vid = vid
        self.path = path
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": memory_limit,
            "threads": threads,
            "access_mode": "READ_ONLY",
        }
        self._con = duckdb.connect(str(path / layout.VERSION_DATABASE), config=config)
        self._con.execute("SET enable_external_access = false")
        self._local = threading.local()
        self.meta: dict[str, Any] = dict(
            self._con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall()
        )
        self.meta["version"] = vid
        self.report: dict[str, Any] = json.loads(
            (path / layout.VERSION_REPORT).read_text(encoding="utf-8")
        )
        self._answers: dict[str, dict[str, tuple[int, int]]] = {kind: {} for kind in KINDS}
        rows = self._con.execute(
            f"SELECT kind, item_id, offset_bytes, length_bytes FROM {INDEX_TABLE}"
        ).fetchall()
        for kind, item_id, offset, length in rows:
            self._answers[kind][item_id] = (offset, length)
        self._blob = self._map(path / layout.VERSION_ANSWERS)
        self._leases = 0
        self._retired = False
        self._lock = threading.Lock()

    @staticmethod
    def _map(path: Path) -> mmap.mmap | None:
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                return None
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def answer(self, kind: str, item_id: str) -> bytes | None:
        """The precomputed gzip body of `kind` for `item_id`, or None if the item is unknown."""
        where = self._answers[kind].get(item_id)
        if where is None or self._blob is None:
            return None
        offset, length = where
        return self._blob[offset : offset + length]

    def has_item(self, item_id: str) -> bool:
        """Whether the item exists in this version."""
        return item_id in self._answers[KINDS[0]]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor for the calling thread (connections are not shared across threads)."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
        return cursor

    def acquire(self) -> None:
        """Start a lease: the handle stays open until the matching release."""
        with self._lock:
            self._leases += 1

    def release(self) -> None:
        """End a lease; close the handle if it was retired and this was the last lease."""
        with self._lock:
            self._leases -= 1
            close = self._retired and self._leases == 0
        if close:
            self._close()

    def retire(self) -> None:
        """A newer version replaced this one: close now if idle, else after the last lease."""
        with self._lock:
            self._retired = True
            close = self._leases == 0
        if close:
            self._close()

    def _close(self) -> None:
        self._con.close()
        if self._blob is not None:
            self._blob.close()


class DataSource:
    """This worker's view of the store: the handle of the current version, kept up to date."""

    def __init__(self, store: DataStore, memory_limit: str, threads: int) -> None:
        self.store = store
        self.memory_limit = memory_limit
        self.threads = threads
        self._handle: VersionHandle | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def current(self) -> VersionHandle | None:
        """The current version's handle, re-checking `current` at most every CHECK_SECONDS."""
        if time.monotonic() - self._checked_at >= CHECK_SECONDS:
            self.refresh()
        return self._handle

    def refresh(self) -> VersionHandle | None:
        """Read `current` now and switch to it if it changed."""
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                vid = self.store.current_vid()
            except StoreError as exc:
                # Keep serving what we have; readiness reports the problem.
                self.last_error = str(exc)
                return self._handle
            if vid is None or (self._handle is not None and self._handle.vid == vid):
                self.last_error = None
                return self._handle
            try:
                fresh = VersionHandle(
                    vid, self.store.versions_dir / vid, self.memory_limit, self.threads
                )
            except (OSError, duckdb.Error, json.JSONDecodeError) as exc:
                self.last_error = f"cannot open version {vid}: {exc}"
                return self._handle
            previous, self._handle = self._handle, fresh
            self.last_error = None
            # Under the lock, so a lease cannot take the old handle after it was retired.
            if previous is not None:
                previous.retire()
        return fresh

    @contextmanager
    def lease(self) -> Iterator[VersionHandle | None]:
        """The current version, held open for the duration of a request."""
        self.current()
        with self._lock:
            handle = self._handle
            if handle is not None:
                handle.acquire()
        if handle is None:
            yield None
            return
        try:
            yield handle
        finally:
            handle.release()

    def close(self) -> None:
        """Close the current handle (at worker shutdown)."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.retire()
