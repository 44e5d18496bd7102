"""The versions a worker compares the served one with, and the comparisons it computed itself.

A forecast revision compares the current version with another (appliance/data/revisions.py).
The import precomputed the comparison with the version before it, in the current version's own
database: that one is read from there. Any other pair is computed here on first use (both
versions' facts, one query on each database, joined into an in-memory DuckDB table), kept for
the next requests of this worker, and forgotten when newer pairs push it out. A version compared
with is opened like the served one, after the same check of its files against SHA256SUMS, and
kept open among the most recent few: an item's revision reads its forecast from there.

Every handle and pair is leased for the duration of a request and closed only once retired and
no request holds it, as the served version is (server/data.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from appliance.data.revisions import (
    ITEM_REVISION_TABLE,
    PairInfo,
    build_pair,
    compare_versions,
    read_pair_info,
)
from appliance.data.run_layout import RunFolders
from appliance.data.store import DataVersion
from appliance.errors import StoreError, VersionDamaged
from server.data import VersionHandle, check_unless_stamped
from server.leases import Leased
from server.metrics import PAIRS_COMPUTED, WorkerMetrics

VERSIONS_KEPT = 2  # other versions open at once per worker (each holds its answer index)
PAIRS_KEPT = 4  # comparisons computed on demand kept per worker (4.1 MiB each at field scale)
PAIR_TABLE = "pair"  # the table of an on-demand pair, in its own in-memory database
PAIR_MEMORY = "256MB"


class RevisionPair(Leased):
    """The rows of one comparison in a DuckDB table, and what the comparison is."""

    def __init__(
        self,
        info: PairInfo,
        precomputed: bool,
        handle: VersionHandle | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        super().__init__()
        self.info = info
        self.precomputed = precomputed
        self.table = ITEM_REVISION_TABLE if precomputed else PAIR_TABLE
        self._handle = handle  # precomputed: the current version's database holds the rows
        self._con = con  # on demand: an in-memory database of its own

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of `sql` on the connection that holds the pair's table."""
        if self._handle is not None:
            return self._handle.cursor().execute(sql, params or []).fetchall()
        if self._con is None:
            msg = "a revision pair without a database"
            raise RuntimeError(msg)
        with self._con.cursor() as cursor:
            return cursor.execute(sql, params or []).fetchall()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()


class ComparedVersions:
    """This worker's other versions and on-demand comparisons (see the module's docstring)."""

    def __init__(
        self, folders: RunFolders, memory_limit: str, threads: int, metrics: WorkerMetrics
    ) -> None:
        self.folders = folders
        self.metrics = metrics
        self.memory_limit = memory_limit
        self.threads = threads
        self._versions: OrderedDict[str, VersionHandle] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], RevisionPair] = OrderedDict()
        self._precomputed: dict[str, PairInfo | None] = {}
        self._lock = threading.Lock()
        # One version opened, or one pair computed, at a time (a pair opens its other version).
        self._opening = threading.RLock()

    @contextmanager
    def version(self, version: DataVersion) -> Iterator[VersionHandle]:
        """`version` opened for reading, leased: VersionDamaged if its check fails, StoreError
        if it cannot be opened (a fault of the node, as for the served version)."""
        handle = self._leased_version(version.vid)
        if handle is None:
            with self._opening:
                handle = self._leased_version(version.vid)
                if handle is None:
                    handle = self._open(version)
        try:
            yield handle
        finally:
            handle.release()

    def _leased_version(self, vid: str) -> VersionHandle | None:
        with self._lock:
            handle = self._versions.get(vid)
            if handle is None:
                return None
            if handle.damage is not None:
                raise VersionDamaged(handle.damage)
            self._versions.move_to_end(vid)
            handle.acquire()
            return handle

    def _open(self, version: DataVersion) -> VersionHandle:
        check_unless_stamped(self.folders, version.vid, version.path)
        try:
            handle = VersionHandle(version, self.memory_limit, self.threads)
        except (OSError, duckdb.Error) as exc:
            msg = f"data version {version.vid} cannot be opened ({exc})"
            raise StoreError(msg) from exc
        handle.acquire()
        with self._lock:
            self._versions[version.vid] = handle
            while len(self._versions) > VERSIONS_KEPT:
                _vid, oldest = self._versions.popitem(last=False)
                oldest.retire()
        return handle

    @contextmanager
    def pair(self, current: VersionHandle, against: DataVersion) -> Iterator[RevisionPair]:
        """The comparison of `current` with `against`: precomputed, kept, or computed now."""
        info = self._precomputed_info(current)
        if info is not None and info.against == against.vid:
            yield RevisionPair(info, precomputed=True, handle=current)
            return
        key = (current.vid, against.vid)
        pair = self._leased_pair(key)
        if pair is None:
            with self._opening:
                pair = self._leased_pair(key)
                if pair is None:
                    pair = self._compute(current, against)
        try:
            yield pair
        finally:
            pair.release()

    def _precomputed_info(self, current: VersionHandle) -> PairInfo | None:
        if current.vid not in self._precomputed:
            self._precomputed[current.vid] = read_pair_info(current.cursor())
        return self._precomputed[current.vid]

    def _leased_pair(self, key: tuple[str, str]) -> RevisionPair | None:
        with self._lock:
            pair = self._pairs.get(key)
            if pair is not None:
                self._pairs.move_to_end(key)
                pair.acquire()
            return pair

    def _compute(self, current: VersionHandle, against: DataVersion) -> RevisionPair:
        """Compare the two versions' facts into a new in-memory database; the pair, leased."""
        # The lease of `against` is held only while its facts are read: its handle is then free
        # to be closed, the pair keeps no reference to it.
        with self.version(against) as other:
            current_horizon, against_horizon, window, mine, theirs = compare_versions(
                current.cursor(),
                current.meta["generated_at"],
                other.cursor(),
                other.meta["generated_at"],
            )
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": PAIR_MEMORY,
            "threads": 1,
        }
        con = duckdb.connect(":memory:", config=config)
        try:
            con.execute("SET enable_external_access = false")
            build_pair(con, PAIR_TABLE, mine, theirs)
        except BaseException:
            con.close()
            raise
        info = PairInfo(current.vid, against.vid, current_horizon, against_horizon, window)
        self.metrics.inc(PAIRS_COMPUTED)
        pair = RevisionPair(info, precomputed=False, con=con)
        pair.acquire()
        with self._lock:
            self._pairs[(current.vid, against.vid)] = pair
            while len(self._pairs) > PAIRS_KEPT:
                _key, oldest = self._pairs.popitem(last=False)
                oldest.retire()
        return pair

    def close(self) -> None:
        """Close every version and pair (at worker shutdown)."""
        with self._lock:
            versions, self._versions = list(self._versions.values()), OrderedDict()
            pairs, self._pairs = list(self._pairs.values()), OrderedDict()
        for handle in versions:
            handle.retire()
        for pair in pairs:
            pair.retire()
