"""The node's versioned data store: immutable versions, an atomic `current` pointer, an audit trail.

Publishing a version is: build it under staging/ (its SHA256SUMS written last), fsync, name it in
the publish intent, rename it into versions/, swap `current` (the commit point), append to
history.jsonl, then clear the intent. `recover()` (run under the writer lock before every change)
removes what a crash left in staging/ and decides from the intent alone whether an interrupted
publish is undone (never served) or kept (served). A folder in versions/ is a published version;
the audit trail is evidence, never consulted to decide what to keep or delete.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.access.actors import Actor, local_actor
from appliance.data import store_layout as layout
from appliance.data.history import AuditTrail, TrailCheck
from appliance.data.import_report import ImportReport
from appliance.data.version_integrity import VersionCheck, check_version
from appliance.errors import StoreError
from appliance.faults import describe, os_fault
from appliance.fsio import atomic_write_bytes, fsync_path, remove_tree, unused_path
from appliance.packs.result_pack import format_timestamp

DIR_MODE = 0o750
REPAIR = "`appliance rollback VID` points it at a version again"


def now_utc() -> datetime:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class DataVersion:
    """One published version, as its import report describes it."""

    vid: str
    path: Path
    report: ImportReport

    @property
    def database(self) -> Path:
        """The version's query-ready DuckDB file."""
        return self.path / layout.VERSION_DATABASE

    @property
    def generated_at(self) -> str:
        """When the ML workstation produced this version's results (RFC 3339)."""
        return self.report.generated_at

    def summary(self, current: bool) -> dict[str, Any]:
        """A stable description for `appliance versions --json` (no clock-dependent fields)."""
        return {"version": self.vid, "current": current} | self.report.summary()


class DataStore:
    """The data folder (APPLIANCE_DATA_DIR) and every operation that reads or changes it."""

    def __init__(self, root: Path, actor: Actor | None = None) -> None:
        self.root = root
        self.actor = actor or local_actor()  # whom the audit trail names for this one's changes
        self.versions_dir = root / layout.VERSIONS_DIR
        self.staging_dir = root / layout.STAGING_DIR
        self.rejected_dir = root / layout.REJECTED_DIR
        self.history_file = root / layout.HISTORY_FILE
        self.current_link = root / layout.CURRENT_LINK
        self.intent_file = root / layout.PUBLISH_INTENT
        self.import_counts_file = root / layout.IMPORT_COUNTS_FILE
        self.trail = AuditTrail(self.history_file)

    def acting_as(self, actor: Actor) -> DataStore:
        """The same store, its changes recorded under `actor` (an API caller, say)."""
        return DataStore(self.root, actor)

    def ensure(self) -> None:
        """Create the store's folders if this is a new node."""
        for folder in (self.root, self.versions_dir, self.staging_dir, self.rejected_dir):
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    @contextmanager
    def writer(self) -> Iterator[list[str]]:
        """Hold the store's single-writer lock, after recovering from any crash; yields notes."""
        try:
            self.ensure()
            fd = os.open(self.root / layout.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise os_fault(exc, f"opening the data store {self.root} for writing") from exc
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
            data = (path / layout.VERSION_REPORT).read_bytes()
        except FileNotFoundError:
            msg = f"no version {vid} in {self.versions_dir}"
            raise StoreError(msg) from None
        except OSError as exc:
            msg = f"version {vid} has an unreadable {layout.VERSION_REPORT} ({exc})"
            raise StoreError(msg) from exc
        where = f"version {vid}'s {layout.VERSION_REPORT}"
        report = ImportReport.from_bytes(data, where)
        if report.version != vid:
            msg = f"{where} describes {report.version!r}, not {vid}"
            raise StoreError(msg)
        return DataVersion(vid, path, report)

    def version_ids(self) -> list[str]:
        """Ids of every folder in versions/, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        ids = [p.name for p in self.versions_dir.iterdir() if layout.version_number(p.name)]
        return sorted(ids, key=lambda vid: layout.version_number(vid) or 0)

    def versions(self) -> list[DataVersion]:
        """Every published version whose import report reads, oldest first.

        Not the one an import is publishing right now (renamed into versions/, `current` not yet
        swapped): that one is published only once it is current.
        """
        found = []
        unpublished = self._intent()
        current = self.current_vid() if unpublished else None
        for vid in self.version_ids():
            if vid == unpublished and vid != current:
                continue
            try:
                found.append(self.version(vid))
            except StoreError:
                continue  # damaged: `appliance versions --verify` names it
        return found

    def history(self) -> list[dict[str, Any]]:
        """Every readable event of the audit trail, oldest first (damaged lines are skipped)."""
        return self.trail.events()

    def verify_history(self) -> TrailCheck:
        """Check the audit trail's hash chain."""
        return self.trail.verify()

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an event to the audit trail and return it."""
        entry = {
            "ts": format_timestamp(now_utc()),
            "event": event,
            **self.actor.trail_fields(),
            "tool": f"appliance {__version__}",
        } | fields
        self.ensure()
        return self.trail.append(entry)

    def imported_pack_ids(self) -> dict[str, str]:
        """pack_id -> version id, for every version folder (to refuse replays).

        Read from the folders themselves (the import report, else the signed pack.json kept
        beside it), so a damaged audit trail or report cannot reopen the door to a replay.
        """
        ids = {}
        for vid in self.version_ids():
            folder = self.versions_dir / vid
            for name in (layout.VERSION_REPORT, layout.VERSION_MANIFEST):
                try:
                    pack_id = json.loads((folder / name).read_bytes()).get("pack_id")
                except (OSError, ValueError, AttributeError):
                    continue
                if isinstance(pack_id, str):
                    ids[pack_id] = vid
                    break
        return ids

    def check_versions(self) -> list[VersionCheck]:
        """Check every version folder against its own SHA256SUMS (reads every byte)."""
        return [check_version(vid, self.versions_dir / vid) for vid in self.version_ids()]

    def next_vid(self) -> str:
        """An id no version ever had: one past the highest in versions/ and in the history."""
        numbers = [layout.version_number(vid) or 0 for vid in self.version_ids()]
        numbers += [layout.version_number(str(e.get("version", ""))) or 0 for e in self.history()]
        numbers.append(layout.version_number(self._intent() or "") or 0)
        return layout.version_id(max(numbers, default=0) + 1)

    def publish(self, built: Path, vid: str, history: dict[str, Any]) -> str | None:
        """Move a built, sealed and flushed version folder into versions/ and make it current.

        `history` is the import's audit-trail line, written before the intent is cleared. Once
        `current` is swapped the version is published: a failure to write that line is returned
        as a note, not raised, and the intent is left for recovery to finish.
        """
        target = self.versions_dir / vid
        if target.exists():
            msg = f"version {vid} already exists"
            raise StoreError(msg)
        atomic_write_bytes(self.intent_file, f"{vid}\n".encode(), mode=0o640)
        built.rename(target)
        fsync_path(self.versions_dir)
        self.switch_current(vid)
        try:
            self.record("import", version=vid, **history)
            self._clear_intent()
        except OSError as exc:
            return (
                f"{vid} is published, but its history line could not be written ({describe(exc)});"
                " the next import or rollback records it"
            )
        return None

    def _intent(self) -> str | None:
        """The version an interrupted publish was making, if any."""
        try:
            vid = self.intent_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"{self.intent_file} cannot be read ({exc}); remove it once no import runs"
            raise StoreError(msg) from exc
        return vid if layout.version_number(vid) is not None else None

    def _clear_intent(self) -> None:
        self.intent_file.unlink(missing_ok=True)
        fsync_path(self.root)

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
        try:
            current = self.current_vid()
        except StoreError as exc:
            # Repaired by the next import or rollback, which points `current` at a real version.
            notes.append(f"{exc}; the next import or rollback repairs it")
            current = None
        trail = self.verify_history()
        if not trail.ok:
            notes.append(f"{trail.describe()}; it is kept as it is (`appliance history verify`)")
        intent = self._intent()
        if intent is not None:
            notes += self._recover_publish(intent, current, trail.ok)
        if trail.ok:
            notes += self._recover_switch(current)
        return notes

    def _recover_publish(self, vid: str, current: str | None, trail_ok: bool) -> list[str]:
        """Undo a publish that never swapped `current`, or finish one that did."""
        notes = []
        if vid != current:
            folder = self.versions_dir / vid
            if folder.exists():
                discard = self.staging_dir / f"discard-{vid}"
                folder.rename(discard)
                remove_tree(discard)
            self.record("import-discarded", version=vid, reason="interrupted before publish")
            notes.append(f"removed {vid}, an import interrupted before it was published")
        elif trail_ok and not any(
            e.get("event") == "import" and e.get("version") == vid for e in self.history()
        ):
            report = self.version(vid).report
            self.record("import", version=vid, recovered=True, **report.history_fields())
            notes.append(f"recorded the import of {vid}, interrupted after it was published")
        self._clear_intent()
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
