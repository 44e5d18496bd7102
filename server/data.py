"""What one server worker serves: the current data version, opened read-only, swapped live.

Each worker notices a new `current` within CHECK_SECONDS: a thread of the worker reads the
symlink that often (and POST /data/refresh makes it look at once). A request leases the version it started with; a replaced version is
closed when its last lease ends, so no in-flight request fails when the data changes.

Before a worker first serves a version it checks the version's files against the SHA256SUMS
written at publish (bit rot, a hand that slipped): a damaged version is never served, and
readiness says what to do. The check runs outside the lock requests take, so the version being
served keeps answering meanwhile (its cost is in docs/performance.md).
"""

from __future__ import annotations

import array
import contextlib
import mmap
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from appliance.data import store_layout as layout
from appliance.data.answers import INDEX_TABLE, KINDS, OVERVIEW_TABLE
from appliance.data.import_report import ImportReport
from appliance.data.run_layout import RunFolders
from appliance.data.series import SERIES, SeriesDamaged, SeriesSlice, slice_series
from appliance.data.store import DataStore, DataVersion
from appliance.data.version_build import META_TABLE
from appliance.data.version_integrity import (
    check_version,
    file_facts,
    stamp_holds,
    write_check_stamp,
)
from appliance.errors import StoreError, VersionDamaged
from appliance.fsio import atomic_write_bytes
from server.item_index import OVERVIEW_COLUMNS, ItemIndex
from server.leases import Leased

AnswerColumns = tuple["array.array[int]", "array.array[int]", "array.array[int]"]
CHECK_SECONDS = 0.25
RETRY_SECONDS = 10.0  # how long a version that would not open is left before it is tried again
REPAIR = (
    "roll back to a good version (`appliance rollback VID` or POST /api/v1/data/rollback) "
    "or import its pack again"
)


def check_before_serving(vid: str, path: Path) -> None:
    """Refuse a version whose files do not match their recorded SHA-256 (VersionDamaged)."""
    check = check_version(vid, path)
    if not check.ok:
        msg = f"data version {vid} is damaged ({'; '.join(check.problems)}); {REPAIR}"
        raise VersionDamaged(msg)


def check_unless_stamped(folders: RunFolders, vid: str, path: Path) -> None:
    """Check `vid`'s files unless its stamp says they matched as they are now (VersionDamaged).

    A good check leaves a stamp, so the next worker or export finds it at once; a file that
    changed while it was hashed gets none. A failed one leaves a damage notice in the run folder
    (as a worker that finds the served version damaged does), which answers at once after that.
    """
    notice = folders.damage_notice(vid)
    if notice.exists():  # a worker found it damaged since the node started: no need to hash again
        raise VersionDamaged(notice.read_text(encoding="utf-8"))
    stamp = folders.check_stamp(vid)
    if stamp_holds(stamp, path):
        return
    before = file_facts(path)
    try:
        check_before_serving(vid, path)
    except VersionDamaged as exc:
        # Said once for every worker and export: asking again must not hash it again.
        with contextlib.suppress(OSError):
            atomic_write_bytes(notice, str(exc).encode(), mode=0o600)
        raise
    with contextlib.suppress(OSError):  # a read-only data dir: the next start hashes
        if file_facts(path) == before:
            write_check_stamp(stamp, path)


class VersionHandle(Leased):
    """One published version opened by this worker: its database, answers and identity."""

    def __init__(self, version: DataVersion, memory_limit: str, threads: int) -> None:
        super().__init__()
        self.vid = vid = version.vid
        self.path = path = version.path
        self.report: ImportReport = version.report
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
        self._numbers, self._where = self._answer_index()
        # Item pages, ranges and searches are answered by SQL until the index is in memory: a
        # thread loads it, so a worker is ready in a second even at 200,000 items.
        self.items: ItemIndex | None = None
        self._items_loaded = threading.Event()
        self.damage: str | None = None  # set when a served answer fails its CRC
        self._blob = self._map(path / layout.VERSION_ANSWERS)
        self._close_after_loading = False
        # Its own cursor, made here: a connection refuses a cursor() while it runs a query.
        loader = threading.Thread(
            target=self._load_items, args=(self._con.cursor(),), name="item-index", daemon=True
        )
        loader.start()

    @staticmethod
    def _map(path: Path) -> mmap.mmap | None:
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                return None
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def _answer_index(self) -> tuple[dict[str, int], dict[str, AnswerColumns]]:
        """Each item's number, and per kind where its answer is: compact at 200,000 items.

        One dict of item ids for every kind, and three arrays of integers per kind (offset,
        length, CRC-32; a length of -1 where the item has no answer of that kind, a CRC of -1
        for a version built before answers had one), instead of a tuple per answer. DuckDB
        hands each column over as one list (a tuple per row took seconds at 200,000 items).
        """
        names = {row[0] for row in self._con.execute(f"DESCRIBE {INDEX_TABLE}").fetchall()}
        crc = "coalesce(crc32, -1)" if "crc32" in names else "-1"
        ids = self._con.execute(
            f"SELECT list(DISTINCT item_id ORDER BY item_id) FROM {INDEX_TABLE}"
        ).fetchone()
        numbers = {item_id: n for n, item_id in enumerate((ids[0] if ids else None) or [])}
        where: dict[str, AnswerColumns] = {}
        per_kind = self._con.execute(
            f"SELECT kind, list(item_id ORDER BY item_id), list(offset_bytes ORDER BY item_id), "
            f"list(length_bytes ORDER BY item_id), list({crc} ORDER BY item_id) "
            f"FROM {INDEX_TABLE} GROUP BY kind"
        ).fetchall()
        for kind, items, offsets, lengths, crcs in per_kind:
            count = len(numbers)
            columns = (
                array.array("q", [0]) * count,
                array.array("q", [-1]) * count,
                array.array("q", [-1]) * count,
            )
            if len(items) == count:  # every item has this kind: the columns are the arrays
                columns = (
                    array.array("q", offsets),
                    array.array("q", lengths),
                    array.array("q", crcs),
                )
            else:
                for item_id, offset, length, check in zip(
                    items, offsets, lengths, crcs, strict=True
                ):
                    number = numbers[item_id]
                    columns[0][number], columns[1][number], columns[2][number] = (
                        offset,
                        length,
                        check,
                    )
            where[kind] = columns
        return numbers, where

    def _load_items(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Load the item index (in its own thread); a version without item_overview has none."""
        try:
            try:
                tables = {row[0] for row in cursor.execute("SHOW TABLES").fetchall()}
                if OVERVIEW_TABLE in tables:
                    rows = cursor.execute(
                        f"SELECT {OVERVIEW_COLUMNS} FROM {OVERVIEW_TABLE}"
                    ).fetchall()
                    self.items = ItemIndex.from_rows(rows, background=True)
            finally:
                cursor.close()
        except duckdb.Error:
            pass  # closed while loading (retired at once), or unreadable: SQL answers instead
        finally:
            with self._lock:
                self._items_loaded.set()
                close = self._close_after_loading
            if close:
                self._release_files()

    def wait_for_items(self, timeout: float | None = None) -> bool:
        """Whether the item index has been loaded (or found missing), waiting up to `timeout`."""
        return self._items_loaded.wait(timeout)

    def has_series(self) -> bool:
        """Whether this version holds the binary series that date ranges are sliced from."""
        return SERIES in self._where

    def series(self, item_id: str, start: date | None, end: date | None) -> SeriesSlice | None:
        """The item's forecast rows from `start` to `end`, or None without a series for it."""
        record = self.answer(SERIES, item_id)
        if record is None:
            return None
        try:
            return slice_series(record, start, end)
        except SeriesDamaged as exc:  # its CRC matched: written wrong, not changed since
            self.damage = f"data version {self.vid} is damaged ({exc}); {REPAIR}"
            raise VersionDamaged(self.damage) from exc

    def answer(self, kind: str, item_id: str) -> bytes | None:
        """The precomputed gzip body of `kind` for `item_id`, or None if the item is unknown.

        VersionDamaged if the stored bytes no longer match their CRC-32 (never sent as they are).
        """
        number = self._numbers.get(item_id)
        columns = self._where.get(kind)
        if number is None or columns is None or self._blob is None:
            return None
        offsets, lengths, crcs = columns
        length = lengths[number]
        if length < 0:
            return None
        offset, crc = offsets[number], crcs[number]
        data = self._blob[offset : offset + length]
        if crc >= 0 and zlib.crc32(data) != crc:
            self.damage = (
                f"data version {self.vid} is damaged ({layout.VERSION_ANSWERS} changed since it "
                f"was published; `appliance versions --verify` checks every file); {REPAIR}"
            )
            raise VersionDamaged(self.damage)
        return data

    def has_item(self, item_id: str) -> bool:
        """Whether the item exists in this version."""
        number = self._numbers.get(item_id)
        columns = self._where.get(KINDS[0])
        return number is not None and columns is not None and columns[1][number] >= 0

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor for the calling thread (connections are not shared across threads)."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            self._local.cursor = cursor
        return cursor

    def _close(self) -> None:
        with self._lock:
            if not self._items_loaded.is_set():
                # The connection refuses to close under the loader's query: the loader closes.
                self._close_after_loading = True
                return
        self._release_files()

    def _release_files(self) -> None:
        self._con.close()
        if self._blob is not None:
            self._blob.close()


class DataSource:
    """This worker's view of the store: the handle of the current version, kept up to date."""

    def __init__(
        self, store: DataStore, memory_limit: str, threads: int, folders: RunFolders
    ) -> None:
        self.store = store
        self.folders = folders
        self.memory_limit = memory_limit
        self.threads = threads
        self._handle: VersionHandle | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self._refused: str | None = None  # a damaged version this worker will not serve
        self._failed: tuple[str | None, float] = (None, 0.0)  # last version that would not open
        self.last_error: str | None = None

    @property
    def damaged(self) -> str | None:
        """Why the current version is not served, if its files are damaged."""
        if self._refused is not None:
            return self.last_error
        return self._handle.damage if self._handle is not None else None

    @property
    def served(self) -> VersionHandle | None:
        """The version this worker serves now, without a look at `current` (so never a wait)."""
        return self._handle

    def current(self) -> VersionHandle | None:
        """The version this worker serves.

        A new `current` is found and checked by `watch` in a thread of its own, so requests are
        never held up by it: they get the version served so far until the new one is ready.
        Only with nothing served yet does the request that asks wait for a check.
        """
        if self._handle is None and time.monotonic() - self._checked_at >= CHECK_SECONDS:
            return self.refresh()
        return self._handle

    def watch(self, stop: threading.Event) -> None:
        """Look at `current` every CHECK_SECONDS until `stop` is set (the worker's watcher)."""
        while not stop.wait(CHECK_SECONDS):
            try:
                self.refresh()
                self._share_damage()
            except Exception as exc:  # noqa: BLE001 (the watcher must outlive any one bad look)
                self.last_error = f"cannot check the current version: {exc!r}"

    def refresh(self) -> VersionHandle | None:
        """Read `current` now and switch to it if it changed (after checking its files)."""
        with self._opening:
            vid = self._wanted()
            if vid is not None:
                self._open(vid)
        return self._handle

    def _share_damage(self) -> None:
        """Tell the other workers of damage this one found in the served version, and learn of theirs."""
        handle = self._handle
        if handle is None:
            return
        notice = self.folders.damage_notice(handle.vid)
        if handle.damage is not None:
            if not notice.exists():
                # A restart must hash this version again: its stamp no longer vouches for it.
                self.folders.check_stamp(handle.vid).unlink(missing_ok=True)
                atomic_write_bytes(notice, handle.damage.encode(), mode=0o600)
        elif notice.exists():
            handle.damage = notice.read_text(encoding="utf-8")

    def _wanted(self) -> str | None:
        """The version to open now, if `current` names one this worker does not serve yet."""
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                vid = self.store.current_vid()
            except StoreError as exc:
                # Keep serving what we have; readiness reports the problem.
                self.last_error = str(exc)
                return None
            if vid is None or (self._handle is not None and self._handle.vid == vid):
                self._refused, self.last_error = None, None
                return None
            if vid == self._refused:
                return None  # damaged: not checked again until `current` changes
            failed, at = self._failed
            if vid == failed and time.monotonic() - at < RETRY_SECONDS:
                return None  # a version that would not open: not hashed again at every look
            return vid

    def _open(self, vid: str) -> None:
        """Check and open `vid`, then serve it; on a problem keep what is served and say why."""
        try:
            check_unless_stamped(self.folders, vid, self.store.versions_dir / vid)
            fresh = VersionHandle(self.store.version(vid), self.memory_limit, self.threads)
        except VersionDamaged as exc:
            with self._lock:
                self._refused, self.last_error = vid, str(exc)
            return
        except (OSError, duckdb.Error, StoreError) as exc:
            with self._lock:
                self.last_error = f"cannot open version {vid}: {exc}"
                self._failed = (vid, time.monotonic())
            return
        with self._lock:
            previous, self._handle = self._handle, fresh
            self._refused, self.last_error = None, None
            # Under the lock, so a lease cannot take the old handle after it was retired.
            if previous is not None:
                previous.retire()

    @contextmanager
    def lease(self) -> Iterator[VersionHandle | None]:
        """The current version, held open for the duration of a request."""
        self.current()
        with self._lock:
            handle = self._handle
            if handle is not None and handle.damage is not None:
                # One answer failed its CRC: nothing more of this version is served with 200.
                raise VersionDamaged(handle.damage)
            if handle is not None:
                handle.acquire()
        if handle is None:
            if self.damaged is not None:
                raise VersionDamaged(self.damaged)  # not "nothing imported": say what is wrong
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
