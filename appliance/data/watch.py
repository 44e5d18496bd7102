"""Watch inbox folders (a network share, a USB stick) and import the packs dropped there.

A pack is read only once its size and modification time have not changed between two looks and
for the settle time (APPLIANCE_WATCH_SETTLE), timed by this machine's clock (not the file's
mtime, which is the writer's), so a copy in progress, even one that pauses, is not read. Hidden files and the usual partial-copy names are ignored. Imported packs move to `done/`,
refused ones to `rejected/` beside a `<name>.reason.txt`. A pack refused as truncated is moved
only once it has stayed unchanged for three more settle times after the refusal (a writer that
paused longer than the settle time may still be writing it). A fault of the node (disk full,
store locked) leaves the pack where it is, to be tried again a minute later. A folder that disappears (the
stick is pulled out) is waited for.

A trust update (`*.trust`, docs/formats.md) of role pack dropped in an inbox is applied before
the packs beside it: while one is still arriving (not yet settled, or refused as truncated and
within its grace), the packs of that inbox wait, so that a pack signed by a new workstation key
is not refused for arriving with the update that trusts it. Once the update has been tried they
go on whatever became of it: an update this node cannot apply (a fault, a trust folder it may
not write) must not hold every pack back. Applied updates move to `done/`, refused ones to
`rejected/` with their reason, as packs do; both are recorded in the audit trail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.data.importer import ImportOptions, import_pack
from appliance.data.store import DataStore
from appliance.errors import ApplianceError, PackRejected, Rejected
from appliance.fsio import unused_path
from appliance.packs.pack_layout import PACK_SUFFIX
from appliance.progress import Progress
from appliance.trust.sshsig import load_allowed_signers
from appliance.trust.trust_layout import ROLE_PACK, UPDATE_SUFFIX
from appliance.trust.trust_update import TrustFiles, TrustRejected, apply_update

DONE_DIR = "done"
REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason.txt"
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload")
# A pack refused as truncated is moved to rejected/ only after this many settle times unchanged.
TRUNCATED_GRACE = 3
# A pack deferred by a fault of the node (disk full, store locked) is tried again after this long.
DEFER_SECONDS = 60.0


@dataclass(frozen=True)
class InboxEvent:
    """Something the watcher did or noticed, for the CLI to print."""

    kind: (
        str  # imported, trusted (a trust update applied), rejected, deferred, missing, back, error
    )
    inbox: Path
    message: str
    pack: Path | None = None


@dataclass
class _Inbox:
    path: Path
    present: bool | None = None
    # name -> (size, mtime), and since when (this machine's monotonic clock) it has had them
    observed: dict[str, tuple[tuple[int, int], float]] = field(default_factory=dict)
    # name -> (size, mtime) when a fault of the node deferred it, and when to try it again
    deferred: dict[str, tuple[tuple[int, int], float]] = field(default_factory=dict)
    handled: set[tuple[str, int, int]] = field(default_factory=set)
    # name -> (size, mtime) it had when refused as truncated, refusal, time of the refusal
    truncated: dict[str, tuple[tuple[int, int], Rejected, float]] = field(default_factory=dict)


def _is_candidate(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    if name.startswith(".") or not name.endswith((PACK_SUFFIX, UPDATE_SUFFIX)):
        return False
    return not name.endswith(PARTIAL_SUFFIXES) and entry.is_file(follow_symlinks=False)


def _is_trust_update(name: str) -> bool:
    return name.endswith(UPDATE_SUFFIX)


def _handling_order(name: str) -> tuple[bool, str]:
    """Trust updates first, then packs, each by name."""
    return (not _is_trust_update(name), name)


class InboxWatcher:
    """Polls inbox folders and imports every pack that has finished arriving."""

    def __init__(
        self,
        store: DataStore,
        inboxes: list[Path],
        signers_file: Path,
        options: ImportOptions,
        settle_seconds: float,
        progress: Progress,
    ) -> None:
        self.store = store
        self.inboxes = [_Inbox(path) for path in inboxes]
        self.signers_file = signers_file
        self.options = options
        self.settle_seconds = settle_seconds
        self.progress = progress

    def poll(self) -> list[InboxEvent]:
        """Look at every inbox once and import what is ready."""
        events: list[InboxEvent] = []
        for inbox in self.inboxes:
            events += self._poll_inbox(inbox)
        return events

    def run(
        self, interval: float, stop: threading.Event, on_event: Callable[[InboxEvent], None]
    ) -> None:
        """Poll every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            for event in self.poll():
                on_event(event)
            stop.wait(interval)

    def _poll_inbox(self, inbox: _Inbox) -> list[InboxEvent]:
        present = inbox.path.is_dir()
        events = []
        if present != inbox.present:
            if not present:
                inbox.observed.clear()
                events.append(
                    InboxEvent("missing", inbox.path, "inbox is not there; waiting for it")
                )
            elif inbox.present is not None:
                events.append(InboxEvent("back", inbox.path, "inbox is back"))
            inbox.present = present
        if not present:
            return events
        try:
            entries = sorted(
                (e for e in os.scandir(inbox.path) if _is_candidate(e)),
                key=lambda e: _handling_order(e.name),
            )
            stats = {e.name: e.stat(follow_symlinks=False) for e in entries}
        except OSError as exc:
            inbox.present = None
            return [*events, InboxEvent("error", inbox.path, f"cannot list inbox: {exc.strerror}")]
        now = time.monotonic()
        observed: dict[str, tuple[tuple[int, int], float]] = {}
        trust_pending = False  # a trust update still arriving: the packs wait for it
        for name, stat in stats.items():
            signature = (stat.st_size, stat.st_mtime_ns)
            seen, since = inbox.observed.get(name, (signature, now))
            if seen != signature:
                since = now
            observed[name] = (signature, since)
            if (name, *signature) in inbox.handled:
                continue
            if trust_pending and not _is_trust_update(name):
                continue
            handled = self._consider(inbox, name, signature, since, now)
            events += handled
            arriving = name in inbox.truncated or (not handled and name not in inbox.deferred)
            if _is_trust_update(name) and arriving:
                trust_pending = True
        inbox.observed = observed
        inbox.truncated = {n: t for n, t in inbox.truncated.items() if n in observed}
        inbox.deferred = {n: d for n, d in inbox.deferred.items() if n in observed}
        return events

    def _consider(
        self, inbox: _Inbox, name: str, signature: tuple[int, int], since: float, now: float
    ) -> list[InboxEvent]:
        """Handle one file of the inbox if it is ready; no events when it is left for later."""
        events: list[InboxEvent] = []
        waiting = inbox.deferred.get(name)
        if waiting is not None and waiting[0] == signature and now < waiting[1]:
            return events
        if name in inbox.truncated:
            event = self._recheck_truncated(inbox, name, signature, now)
            events += [event] if event is not None else []
            if event is None or event.kind == "rejected":
                return events
        # Settled by this machine's clock, not the file's mtime (the writer's clock, or a
        # copy's `cp -p`): unchanged at two looks for at least the settle time.
        if name not in inbox.observed or now - since < self.settle_seconds:
            return events
        if _is_trust_update(name):
            return [*events, self._apply_trust(inbox, inbox.path / name, signature)]
        return [*events, self._import(inbox, inbox.path / name, signature)]

    def _recheck_truncated(
        self, inbox: _Inbox, name: str, signature: tuple[int, int], now: float
    ) -> InboxEvent | None:
        """Move a pack refused as truncated once it stayed unchanged; forget it if it grew."""
        seen, refusal, refused_at = inbox.truncated[name]
        if seen != signature:
            del inbox.truncated[name]  # it grew: a copy was still going on; judge it afresh
            return InboxEvent("deferred", inbox.path, f"{name} grew after it was read; waiting")
        if now - refused_at < TRUNCATED_GRACE * self.settle_seconds:
            return None
        del inbox.truncated[name]
        pack = inbox.path / name
        moved = self._move(inbox, pack, signature, REJECTED_DIR, f"{refusal.reason}: {refusal}\n")
        return InboxEvent("rejected", inbox.path, f"{name} refused: {refusal}{moved}", pack)

    def _import(self, inbox: _Inbox, pack: Path, signature: tuple[int, int]) -> InboxEvent:
        try:
            signers = load_allowed_signers(self.signers_file)
            result = import_pack(self.store, pack, signers, self.options, self.progress)
        except PackRejected as exc:
            if exc.reason == "truncated":
                # Perhaps a copy that paused longer than the settle time: look again before moving.
                inbox.truncated[pack.name] = (signature, exc, time.monotonic())
                message = f"{pack.name} looks truncated ({exc}); moved to rejected/ if it stays so"
                return InboxEvent("deferred", inbox.path, message, pack)
            moved = self._move(inbox, pack, signature, REJECTED_DIR, f"{exc.reason}: {exc}\n")
            return InboxEvent("rejected", inbox.path, f"{pack.name} refused: {exc}{moved}", pack)
        except (ApplianceError, OSError) as exc:
            # Not the pack's fault (trust file unreadable, store locked, disk full): try again
            # later, but not at every look (each try copies the pack and records a fault).
            inbox.deferred[pack.name] = (signature, time.monotonic() + DEFER_SECONDS)
            message = f"{pack.name} waits: {exc} (tried again in {DEFER_SECONDS:g} s)"
            return InboxEvent("deferred", inbox.path, message, pack)
        moved = self._move(inbox, pack, signature, DONE_DIR, None)
        return InboxEvent(
            "imported", inbox.path, f"{pack.name} imported as {result.vid}{moved}", pack
        )

    def _apply_trust(self, inbox: _Inbox, update: Path, signature: tuple[int, int]) -> InboxEvent:
        """Apply a trust update of role pack to the signers the packs are checked with."""
        try:
            verified = apply_update(update, TrustFiles(ROLE_PACK, self.signers_file))
        except TrustRejected as exc:
            if exc.reason == "truncated":
                inbox.truncated[update.name] = (signature, exc, time.monotonic())
                message = (
                    f"{update.name} looks truncated ({exc}); moved to rejected/ if it stays so"
                )
                return InboxEvent("deferred", inbox.path, message, update)
            note = self._record("trust-update-refused", **exc.audit_fields(update))
            moved = self._move(inbox, update, signature, REJECTED_DIR, f"{exc.reason}: {exc}\n")
            return InboxEvent(
                "rejected", inbox.path, f"{update.name} refused: {exc}{moved}{note}", update
            )
        except (ApplianceError, OSError) as exc:
            inbox.deferred[update.name] = (signature, time.monotonic() + DEFER_SECONDS)
            message = f"{update.name} waits: {exc} (tried again in {DEFER_SECONDS:g} s)"
            return InboxEvent("deferred", inbox.path, message, update)
        note = self._record("trust-update", **verified.audit_fields())
        moved = self._move(inbox, update, signature, DONE_DIR, None)
        message = (
            f"{update.name} applied: role pack serial {verified.previous_serial} -> "
            f"{verified.update.serial}, signed by {verified.signer.principal} "
            f"({len(verified.added)} key(s) added, {len(verified.removed)} removed, "
            f"{len(verified.revoked)} revoked){moved}{note}"
        )
        return InboxEvent("trusted", inbox.path, message, update)

    def _record(self, event: str, **fields: object) -> str:
        """Record a trust event in the audit trail; a note for the message if it cannot be."""
        try:
            self.store.record(event, **fields)
        except OSError as exc:
            return f" (not in history.jsonl: {exc.strerror or exc})"
        return ""

    def _move(
        self, inbox: _Inbox, pack: Path, signature: tuple[int, int], folder: str, reason: str | None
    ) -> str:
        """Move a handled pack aside; on read-only media remember it instead. Returns a note."""
        try:
            target_dir = inbox.path / folder
            target_dir.mkdir(exist_ok=True)
            target = unused_path(target_dir, pack.name)
            pack.rename(target)
            if reason is not None:
                (target_dir / f"{target.name}{REASON_SUFFIX}").write_text(reason, encoding="utf-8")
        except OSError as exc:
            if inbox.path.is_dir():
                inbox.handled.add((pack.name, *signature))
            return f" (left in place: {exc.strerror})"
        return f" -> {folder}/{target.name}"
