"""The server's own folders in the data dir, as constants, and the one step that prepares them.

`run/<name>/` holds what the workers of one server run share: metrics snapshots, the rate
limiters' counters, uploads being received and the pipes of exports being streamed. Two servers may run on one data dir at once (an
upgrade starts the new version beside the old one on a shared port), so each run has its own
folder, named by APPLIANCE_RUN_NAME, and holds a lock on it (`flock` of its `.lock`) for as long
as it runs. None of it outlives the run: `prepare_run_dir` removes the folders whose lock nobody
holds any more, and never touches a running server's. `cache/` is the response cache, which does
outlive a run (its keys carry the data version). See docs/formats.md ("Data store on the node").
"""

from __future__ import annotations

import fcntl
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from appliance.data.store_layout import VERSIONS_DIR
from appliance.errors import ConfigError

RUN_DIR = "run"
RUN_LOCK = ".lock"  # in run/<name>/: held by the server running there
PREPARE_LOCK = ".prepare.lock"  # in run/: one server at a time claims its folder and clears
DEFAULT_RUN_NAME = "local"  # a server not started by `appliance serve` (tests, a notebook)
RUN_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
CACHE_DIR = "cache"
DIR_MODE = 0o700  # the cache and the counters may hold what a viewer token protects

METRICS_DIR = "metrics"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "worker-", ".json"
SNAPSHOT_TEMP_SUFFIX = ".tmp"
READ_LIMITER = "ratelimit-read"
ADMIN_LIMITER = "ratelimit-admin"
UPLOADS_DIR = "uploads"
UPLOAD_PREFIX, UPLOAD_SUFFIX = "upload-", ".pack"
# Exports running now: the named pipe each streams through, and the lock files of the export caps.
EXPORTS_DIR = "exports"
EXPORT_PIPE_PREFIX = "export-"
# A worker that finds a served version damaged leaves `damaged-<vid>` (its reason) for the others.
DAMAGE_PREFIX = "damaged-"
# Versions whose files matched their SHA256SUMS, with the facts of those files: outlives a run.
CHECKED_DIR = "checked"
STAMP_SUFFIX = ".json"


@dataclass(frozen=True)
class RunFolders:
    """Where one server run on a data dir keeps its run state, and where the cache is."""

    data_dir: Path
    name: str = DEFAULT_RUN_NAME

    @property
    def runs(self) -> Path:
        """The folder of every server run's own folder."""
        return self.data_dir / RUN_DIR

    @property
    def run(self) -> Path:
        """Per-run shared state of this run's workers."""
        return self.runs / self.name

    @property
    def cache(self) -> Path:
        """The response cache shared by the workers."""
        return self.data_dir / CACHE_DIR

    @property
    def metrics(self) -> Path:
        """One snapshot file per worker, summed by /metrics."""
        return self.run / METRICS_DIR

    @property
    def read_limiter(self) -> Path:
        """Counters of the read rate limit."""
        return self.run / READ_LIMITER

    @property
    def admin_limiter(self) -> Path:
        """Counters of the admin rate limit."""
        return self.run / ADMIN_LIMITER

    def damage_notice(self, vid: str) -> Path:
        """Where a worker says that version `vid` failed a check while it was served."""
        return self.run / f"{DAMAGE_PREFIX}{vid}"

    def check_stamp(self, vid: str) -> Path:
        """Where the facts of version `vid`'s files are kept after they matched their SHA-256."""
        return self.data_dir / CHECKED_DIR / f"{vid}{STAMP_SUFFIX}"

    @property
    def uploads(self) -> Path:
        """Packs being received by POST /api/v1/data/packs."""
        return self.run / UPLOADS_DIR

    @property
    def exports(self) -> Path:
        """Exports being streamed by GET /api/v1/export/...: their pipes and cap locks."""
        return self.run / EXPORTS_DIR


@dataclass(frozen=True)
class RunClaim:
    """A run folder made and locked for one server: it stays this server's while `lock` is open."""

    folders: RunFolders
    lock: IO[bytes]

    def release(self) -> None:
        """Let the next start remove the folder (closing the lock file, as the process's end does)."""
        self.lock.close()


def check_run_name(name: str) -> str:
    """`name` if it may name a run folder, else ConfigError."""
    if not RUN_NAME_PATTERN.fullmatch(name):
        msg = f"run name {name!r}: use 1 to 32 of a-z, 0-9 and '-', starting with a letter or digit"
        raise ConfigError(msg)
    return name


def prepare_run_dir(data_dir: Path, name: str = DEFAULT_RUN_NAME) -> RunClaim:
    """Before the workers start: this run's folder made and locked, stale runs' folders removed.

    A folder whose lock another live server holds is left alone; a stale one is removed whole
    (it holds our lock file, so it is ours). ConfigError if `name` is held by a live server;
    OSError if the node does not let us (a read-only or full disk).
    """
    folders = RunFolders(data_dir, check_run_name(name))
    folders.runs.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with _held(folders.runs / PREPARE_LOCK):
        for other in sorted(folders.runs.iterdir()):
            if other.name != name and other.is_dir() and not other.is_symlink():
                _remove_if_stale(RunFolders(data_dir, other.name))
        lock = _claim(folders)
    _prune_stamps(data_dir)
    return RunClaim(folders, lock)


@contextmanager
def _held(path: Path) -> Iterator[None]:
    """An exclusive flock of `path` (made if need be) for the duration of the block."""
    with path.open("ab") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def _try_lock(path: Path) -> IO[bytes] | None:
    """`path` opened and exclusively locked, or None if a live process holds its lock."""
    file = path.open("ab")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    return file


def _claim(folders: RunFolders) -> IO[bytes]:
    """This run's folder, emptied of a stale run of the same name, then made and locked."""
    lock_path = folders.run / RUN_LOCK
    if lock_path.is_file():
        lock = _try_lock(lock_path)
        if lock is None:
            msg = (
                f"{folders.run} is in use by another server: give this one another "
                "APPLIANCE_RUN_NAME (or leave it empty)"
            )
            raise ConfigError(msg)
        lock.close()
        _remove_run(folders)
    folders.run.mkdir(mode=DIR_MODE, exist_ok=True)
    folders.metrics.mkdir(mode=DIR_MODE, exist_ok=True)
    lock = _try_lock(lock_path)
    if lock is None:  # cannot happen under the prepare lock, unless outside our code
        msg = f"{folders.run} is in use by another server"
        raise ConfigError(msg)
    lock_path.chmod(0o600)
    return lock


def _remove_if_stale(folders: RunFolders) -> None:
    """Remove a run's folder if it is ours (it has a lock file) and its server has stopped."""
    lock_path = folders.run / RUN_LOCK
    if not lock_path.is_file():
        return  # not a run folder of ours (an older version's flat files, say)
    lock = _try_lock(lock_path)
    if lock is None:
        return  # a live server's
    with lock:
        _remove_run(folders)


def _remove_run(folders: RunFolders) -> None:
    """Drop a stopped run's folder; the versions it found damaged are hashed again at next open."""
    for notice in folders.run.glob(f"{DAMAGE_PREFIX}*"):
        folders.check_stamp(notice.name.removeprefix(DAMAGE_PREFIX)).unlink(missing_ok=True)
    shutil.rmtree(folders.run)


def _prune_stamps(data_dir: Path) -> None:
    """Drop the stamps of versions no longer in the store (removed by hand): a name reused later."""
    checked = data_dir / CHECKED_DIR
    if checked.is_dir():
        for stamp in checked.glob(f"*{STAMP_SUFFIX}"):
            if not (data_dir / VERSIONS_DIR / stamp.name.removesuffix(STAMP_SUFFIX)).is_dir():
                stamp.unlink(missing_ok=True)
