"""The audit trail (history.jsonl): append-only JSON lines, each chained to the one before it.

Every line carries `prev_sha256`, the SHA-256 of the previous line's bytes (without its newline;
64 zeros on the first line), so removing, editing or reordering a line breaks the chain at that
line. The trail is evidence, never state: the store decides what is published from the version
folders, and a damaged trail is reported (`appliance history verify`, /health/ready,
GET /api/v1/data/versions) but never acted on. Lines written before the chain existed (no
`prev_sha256`) are accepted only as a prefix of the file.

A chain cannot vouch for its own last line, so history.head beside the trail holds the line count
and the SHA-256 of the last line, rewritten after each append. A head one line behind is what a
crash between the two writes leaves, and is accepted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.data.store_layout import (
    HISTORY_CHAIN_FIELD,
    HISTORY_CHAIN_START,
    HISTORY_HEAD,
    HISTORY_LOCK,
)
from appliance.fsio import atomic_write_bytes

TAIL_BYTES = 1 << 16  # a line is far shorter; the last line is found in this much of the end


def line_digest(line: bytes) -> str:
    """The chain value a line passes on to the next: SHA-256 hex of its bytes."""
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True)
class TrailCheck:
    """What `verify_trail` found: intact, or the first bad line and why."""

    lines: int
    legacy_lines: int
    first_bad_line: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every line is well-formed and chained to the one before it."""
        return self.first_bad_line is None

    def describe(self) -> str:
        """One line for people."""
        if self.ok:
            legacy = f" ({self.legacy_lines} written before the chain)" if self.legacy_lines else ""
            return f"audit trail intact: {self.lines} line(s){legacy}"
        return f"audit trail damaged at line {self.first_bad_line}: {self.problem}"

    def as_json(self) -> dict[str, Any]:
        """For --json and the API."""
        return {
            "ok": self.ok,
            "lines": self.lines,
            "legacy_lines": self.legacy_lines,
            "first_bad_line": self.first_bad_line,
            "problem": self.problem,
        }


def verify_lines(lines: list[bytes], head: tuple[int, str] | None = None) -> TrailCheck:
    """Check the chain of the trail's lines (each without its newline), then its recorded head."""
    previous: bytes | None = None
    legacy = 0
    for number, line in enumerate(lines, start=1):
        problem = _line_problem(line, previous, chained=legacy < number - 1)
        if problem is not None:
            return TrailCheck(len(lines), legacy, number, problem)
        if json.loads(line).get(HISTORY_CHAIN_FIELD) is None:
            legacy += 1
        previous = line
    if head is not None:
        count, digest = head
        matches = 0 < count <= len(lines) and line_digest(lines[count - 1]) == digest
        if not matches or len(lines) > count + 1:
            where = min(count, len(lines)) or 1
            return TrailCheck(len(lines), legacy, where, f"does not match {HISTORY_HEAD}")
    return TrailCheck(len(lines), legacy)


def _line_problem(line: bytes, previous: bytes | None, chained: bool) -> str | None:
    """Why `line` breaks the trail after `previous` (`chained`: a chained line came before)."""
    try:
        entry = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not a JSON line (damaged or torn)"
    if not isinstance(entry, dict):
        return "not a JSON object"
    link = entry.get(HISTORY_CHAIN_FIELD)
    if link is None:
        return f"no {HISTORY_CHAIN_FIELD} after the chain began" if chained else None
    if previous is None:
        return None if link == HISTORY_CHAIN_START else "the first line does not start the chain"
    if link != line_digest(previous):
        return (
            f"{HISTORY_CHAIN_FIELD} does not match the line before it "
            "(that line was changed, or lines were removed or inserted here)"
        )
    return None


class AuditTrail:
    """The history.jsonl file of a data store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(HISTORY_HEAD)
        self.lock_path = path.with_name(HISTORY_LOCK)

    def head(self) -> tuple[int, str] | None:
        """(line count, SHA-256 of the last line) as last recorded; None before the first append."""
        try:
            count, digest = self.head_path.read_text(encoding="ascii").split()
            return int(count), digest
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            return (0, "unreadable")

    def raw_lines(self) -> list[bytes]:
        """Every line of the file, without newlines (an absent file has none)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return data.splitlines()

    def events(self) -> list[dict[str, Any]]:
        """Every readable event, oldest first (damaged lines are skipped, never repaired)."""
        events = []
        for line in self.raw_lines():
            try:
                entry = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(entry, dict):
                events.append(entry)
        return events

    def _link_to(self, last: bytes | None) -> str:
        """The chain value of the next line: the last line's digest, unless the head disagrees.

        When the last line no longer matches the head (it was damaged), the next line links to
        what the head says it was, so appending never launders the damage.
        """
        if last is None:
            return HISTORY_CHAIN_START
        head = self.head()
        if head is None or head[1] == line_digest(last) or head[1] == "unreadable":
            return line_digest(last)
        lines = self.raw_lines()
        if head[0] == len(lines) - 1:  # a crash came between the last append and its head
            return line_digest(last)
        return head[1]

    def verify(self) -> TrailCheck:
        """Check the whole chain and its head."""
        return verify_lines(self.raw_lines(), self.head())

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append `entry` chained to the last line, flushed; returns the entry as written.

        The trail's own lock is held from reading the last line to writing the head, so two
        writers (an import and an admin's refresh, say) never chain onto the same line.
        """
        lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._append_locked(entry)
        finally:
            os.close(lock)

    def _append_locked(self, entry: dict[str, Any]) -> dict[str, Any]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            last, ends_with_newline = _last_line(fd)
            chained = {HISTORY_CHAIN_FIELD: self._link_to(last)}
            written = entry | chained
            line = json.dumps(written, sort_keys=False, default=str).encode("utf-8")
            # A torn last line (power cut mid-write) stays as it is, damaged, on its own line.
            os.write(fd, (b"" if ends_with_newline else b"\n") + line + b"\n")
            os.fsync(fd)
            count = _count_lines(fd)
        finally:
            os.close(fd)
        atomic_write_bytes(self.head_path, f"{count} {line_digest(line)}\n".encode(), mode=0o640)
        return written


def _last_line(fd: int) -> tuple[bytes | None, bool]:
    """The file's last line (None if empty) and whether the file ends with a newline."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, True
    start = max(0, size - TAIL_BYTES)
    tail = os.pread(fd, size - start, start)
    while b"\n" not in tail.rstrip(b"\n") and start > 0:  # a line longer than the tail
        start = max(0, start - TAIL_BYTES)
        tail = os.pread(fd, size - start, start)
    ends_with_newline = tail.endswith(b"\n")
    lines = tail.splitlines()
    return (lines[-1] if lines else None), ends_with_newline


def _count_lines(fd: int) -> int:
    """Lines in the open file (it ends with a newline)."""
    count = 0
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count
