"""The node's versioned data store: immutable versions, an atomic `current` pointer, an audit trail.

Publishing a version is: build it under staging/, fsync, rename it into versions/, swap `current`
(the commit point), then append to history.jsonl. A crash before the swap leaves the old version
served; `recover()` (run under the writer lock before every change) removes what a crash left in
staging/ or versions/ and writes the history line a crash after the swap did not get to write.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance import store_layout as layout
from appliance.errors import StoreError
from appliance.fsio import append_line, atomic_write_bytes, fsync_path, remove_tree, unused_path
from appliance.result_pack import format_timestamp

DIR_MODE = 0o750
REPAIR = "`appliance rollback VID` points it at a version again"


def now_utc() -> datetime:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def actor() -> str:
    """Who is acting, for the audit trail: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class DataVersion:
    """One published version, as its import report describes it."""

    vid: str
    path: Path
    report: dict[str, Any]

    @property
    def database(self) -> Path:
        """The version's query-ready DuckDB file."""
        return self.path / layout.VERSION_DATABASE

    @property
    def generated_at(self) -> str:
        """When the ML workstation produced this version's results (RFC 3339)."""
        return str(self.report["generated_at"])

    def summary(self, current: bool) -> dict[str, Any]:
        """A stable description for `appliance versions --json` (no clock-dependent fields)."""
        keys = (
            "pack_id",
            "dataset_id",
            "model_version",
            "source",
            "generated_at",
            "imported_at",
            "imported_by",
            "signer",
            "rows",
        )
        return {"version": self.vid, "current": current} | {k: self.report.get(k) for k in keys}


class DataStore:
    """The data folder (APPLIANCE_DATA_DIR) and every operation that reads or changes it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions_dir = root / layout.VERSIONS_DIR
        self.staging_dir = root / layout.STAGING_DIR
        self.rejected_dir = root / layout.REJECTED_DIR
        self.history_file = root / layout.HISTORY_FILE
        self.current_link = root / layout.CURRENT_LINK

    def ensure(self) -> None:
        """Create the store's folders if this is a new node."""
        for folder in (self.root, self.versions_dir, self.staging_dir, self.rejected_dir):
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    @contextmanager
    def writer(self) -> Iterator[list[str]]:
        """Hold the store's single-writer lock, after recovering from any crash; yields notes."""
        self.ensure()
        fd = os.open(self.root / layout.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"{self.root} is locked by another import or rollback; try again when it ends"
                raise StoreError(msg) from None
            yield self.recover()
        finally:
            os.close(fd)

    def current_vid(self) -> str | None:
        """The id of the served version, or None on a store with nothing imported yet."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"{self.current_link} is not a symlink to a version ({exc.strerror}); {REPAIR}"
            raise StoreError(msg) from exc
        vid = Path(target).name
        if layout.version_number(vid) is None or not (self.versions_dir / vid).is_dir():
            msg = f"{self.current_link} points at {target!r}, which is not a version; {REPAIR}"
            raise StoreError(msg)
        return vid

    def current(self) -> DataVersion | None:
        """The served version, or None."""
        vid = self.current_vid()
        return self.version(vid) if vid else None

    def version(self, vid: str) -> DataVersion:
        """A published version by id."""
        if layout.version_number(vid) is None:
            msg = f"{vid!r} is not a version id (they look like {layout.version_id(1)})"
            raise StoreError(msg)
        path = self.versions_dir / vid
        try:
            report = json.loads((path / layout.VERSION_REPORT).read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"no version {vid} in {self.versions_dir}"
            raise StoreError(msg) from None
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"version {vid} has an unreadable {layout.VERSION_REPORT} ({exc})"
            raise StoreError(msg) from exc
        return DataVersion(vid, path, report)

    def version_ids(self) -> list[str]:
        """Ids of every folder in versions/, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        ids = [p.name for p in self.versions_dir.iterdir() if layout.version_number(p.name)]
        return sorted(ids, key=lambda vid: layout.version_number(vid) or 0)

    def versions(self) -> list[DataVersion]:
        """Every published version, oldest first (not one a crash left half-published)."""
        published = self._recorded_imports() | {self.current_vid()}
        return [self.version(vid) for vid in self.version_ids() if vid in published]

    def _recorded_imports(self) -> set[str | None]:
        return {e.get("version") for e in self.history() if e.get("event") == "import"}

    def history(self) -> list[dict[str, Any]]:
        """Every event of the audit trail, oldest first (a torn last line is skipped)."""
        try:
            lines = self.history_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an event to the audit trail and return it."""
        entry = {
            "ts": format_timestamp(now_utc()),
            "event": event,
            "actor": actor(),
            "tool": f"appliance {__version__}",
        } | fields
        self.ensure()
        append_line(self.history_file, json.dumps(entry, sort_keys=False, default=str))
        return entry

    def imported_pack_ids(self) -> dict[str, str]:
        """pack_id -> version id, for every published version (to refuse replays)."""
        return {v.report["pack_id"]: v.vid for v in self.versions()}

    def next_vid(self) -> str:
        """An id no version ever had: one past the highest in versions/ and in the history."""
        numbers = [layout.version_number(vid) or 0 for vid in self.version_ids()]
        numbers += [layout.version_number(str(e.get("version", ""))) or 0 for e in self.history()]
        return layout.version_id(max(numbers, default=0) + 1)

    def publish(self, built: Path, vid: str) -> None:
        """Move a fully built and flushed version folder into versions/ and make it current."""
        target = self.versions_dir / vid
        if target.exists():
            msg = f"version {vid} already exists"
            raise StoreError(msg)
        built.rename(target)
        fsync_path(self.versions_dir)
        self.switch_current(vid)

    def switch_current(self, vid: str) -> None:
        """Point `current` at `vid` in one atomic rename (readers see old or new, never neither)."""
        temp = self.root / f".{layout.CURRENT_LINK}.{os.getpid()}.tmp"
        temp.unlink(missing_ok=True)
        os.symlink(f"{layout.VERSIONS_DIR}/{vid}", temp)
        os.replace(temp, self.current_link)
        fsync_path(self.root)

    def recover(self) -> list[str]:
        """Finish or undo what a crash interrupted; returns a note for each thing done."""
        notes = []
        for leftover in sorted(self.staging_dir.iterdir()) if self.staging_dir.is_dir() else []:
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink()
            notes.append(f"removed {leftover.name} left in staging/ by an interrupted import")
        for stray in self.root.glob(f".{layout.CURRENT_LINK}.*.tmp"):
            stray.unlink()
        recorded = self._recorded_imports()
        try:
            current = self.current_vid()
        except StoreError as exc:
            # Repaired by the next import or rollback, which points `current` at a real version.
            notes.append(f"{exc}; the next import or rollback repairs it")
            current = None
        for vid in self.version_ids():
            if vid in recorded:
                continue
            if vid == current:
                report = self.version(vid).report
                self.record("import", version=vid, recovered=True, **history_fields(report))
                notes.append(f"recorded the import of {vid}, interrupted after it was published")
            else:
                discard = self.staging_dir / f"discard-{vid}"
                (self.versions_dir / vid).rename(discard)
                remove_tree(discard)
                self.record("import-discarded", version=vid, reason="interrupted before publish")
                notes.append(f"removed {vid}, an import interrupted before it was published")
        notes += self._recover_switch(current)
        return notes

    def _recover_switch(self, current: str | None) -> list[str]:
        """Record a switch of `current` (a rollback) whose history line a crash prevented."""
        switches = [e for e in self.history() if e.get("event") in ("import", "rollback")]
        logged = switches[-1].get("version") if switches else None
        if current is None or logged is None or current == logged:
            return []
        self.record("rollback", version=current, previous=logged, recovered=True)
        return [f"recorded the switch from {logged} to {current}, interrupted before it was logged"]

    def write_rejection(self, name: str, fields: dict[str, Any]) -> Path:
        """Leave a reason file for a refused pack in rejected/."""
        self.ensure()
        stamp = now_utc().strftime("%Y%m%dT%H%M%SZ")
        path = unused_path(self.rejected_dir, f"{stamp}-{Path(name).name}", ".reason.json")
        atomic_write_bytes(path, (json.dumps(fields, indent=2, default=str) + "\n").encode())
        return path


def history_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The fields of an import report that go into its history line."""
    keys = (
        "previous",
        "pack_id",
        "dataset_id",
        "model_version",
        "source",
        "generated_at",
        "signer",
        "pack_file",
        "manifest_sha256",
        "rows",
        "forced_older",
    )
    return {k: report.get(k) for k in keys}
