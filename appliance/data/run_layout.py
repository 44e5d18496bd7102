"""The server's own folders in the data dir, as constants, and the one step that prepares them.

`run/` holds what the workers of one server run share: metrics snapshots, the rate limiters'
counters and uploads being received. None of it outlives the run, so `prepare_run_dir` clears it
before the workers start. `cache/` is the response cache, which does outlive a run (its keys
carry the data version). See docs/formats.md ("Data store on the node").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.data.store_layout import VERSIONS_DIR

RUN_DIR = "run"
CACHE_DIR = "cache"
DIR_MODE = 0o700  # the cache and the counters may hold what a viewer token protects

METRICS_DIR = "metrics"
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "worker-", ".json"
SNAPSHOT_TEMP_SUFFIX = ".tmp"
READ_LIMITER = "ratelimit-read"
ADMIN_LIMITER = "ratelimit-admin"
UPLOADS_DIR = "uploads"
UPLOAD_PREFIX, UPLOAD_SUFFIX = "upload-", ".pack"
# A worker that finds a served version damaged leaves `damaged-<vid>` (its reason) for the others.
DAMAGE_PREFIX = "damaged-"
# Versions whose files matched their SHA256SUMS, with the facts of those files: outlives a run.
CHECKED_DIR = "checked"
STAMP_SUFFIX = ".json"


@dataclass(frozen=True)
class RunFolders:
    """Where one data dir's server keeps its run state and its cache."""

    data_dir: Path

    @property
    def run(self) -> Path:
        """Per-run shared state of the workers."""
        return self.data_dir / RUN_DIR

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


def is_metrics_file(name: str) -> bool:
    """Whether `name` is a worker's snapshot or a torn write of one (our files only)."""
    snapshot = name.startswith(SNAPSHOT_PREFIX) and name.endswith(SNAPSHOT_SUFFIX)
    torn = name.startswith(f".{SNAPSHOT_PREFIX}") and name.endswith(SNAPSHOT_TEMP_SUFFIX)
    return snapshot or torn


def prepare_run_dir(data_dir: Path) -> RunFolders:
    """Before the workers start: the run folder made, and cleared of an earlier run's state.

    Only our own files are removed, so a data dir set to the wrong place loses nothing else.
    OSError if the node does not let us (a read-only or full disk).
    """
    folders = RunFolders(data_dir)
    folders.run.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    folders.metrics.mkdir(mode=DIR_MODE, exist_ok=True)
    for path in folders.metrics.iterdir():
        if is_metrics_file(path.name) and path.is_file():
            path.unlink(missing_ok=True)
    for limiter in (folders.read_limiter, folders.admin_limiter):
        limiter.unlink(missing_ok=True)
    for notice in folders.run.glob(f"{DAMAGE_PREFIX}*"):  # each worker checks a version anew
        folders.check_stamp(notice.name.removeprefix(DAMAGE_PREFIX)).unlink(missing_ok=True)
        notice.unlink()
    # Stamps of versions no longer in the store (removed by hand): theirs is a name reused later.
    checked = data_dir / CHECKED_DIR
    if checked.is_dir():
        for stamp in checked.glob(f"*{STAMP_SUFFIX}"):
            if not (data_dir / VERSIONS_DIR / stamp.name.removesuffix(STAMP_SUFFIX)).is_dir():
                stamp.unlink(missing_ok=True)
    # Uploads a killed worker left half-received (the server's own temporary files).
    for upload in folders.uploads.glob(f"{UPLOAD_PREFIX}*{UPLOAD_SUFFIX}"):
        upload.unlink()
    return folders
