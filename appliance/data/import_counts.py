"""How many imports ended in each way, kept in the store for the server's /metrics.

The importer (`appliance import`, `appliance watch`, an upload) runs outside the server, so its
counts live in a file of the store (IMPORT_COUNTS_FILE) that the server reads at every scrape.
The file is rewritten whole, under the store's writer lock, atomically and flushed: readers see
the old counts or the new ones. The counts are a convenience for alerting, not a record: the
audit trail (history.jsonl) is the record. A damaged file is a fault of the node; the next
import starts the counts again from zero (Prometheus takes the drop for a counter reset).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from appliance.fsio import atomic_write_bytes
from appliance.packs.result_pack import format_timestamp, parse_timestamp

IMPORTED, REJECTED, FAULT = "imported", "rejected", "fault"
RESULTS = (IMPORTED, REJECTED, FAULT)
NO_REASON = "none"  # the reason of an import that published a version
OTHER_REASON = "other"  # a reason that is not a short code (none is, today)
COUNTS_FORMAT = 1
COUNTS_MODE = 0o640  # like history.jsonl: the server's account reads it through its group
# Reasons are the short codes of PackRejected and NodeFault; a file with more outcomes than
# this, or a reason of another shape, was not written by the importer.
MAX_OUTCOMES = 256
REASON = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class UnreadableCounts(ValueError):
    """An import counts file that is torn, foreign or of another format."""


@dataclass(frozen=True)
class Outcome:
    """How often imports ended with one result and reason, and when one last did."""

    result: str
    reason: str
    count: int
    last_at: datetime


def read_counts(path: Path) -> list[Outcome]:
    """The outcomes counted so far, by result then reason; none for a store that has no file yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        msg = f"{path.name} is not JSON: {exc}"
        raise UnreadableCounts(msg) from exc
    if not isinstance(document, dict) or document.get("format") != COUNTS_FORMAT:
        msg = f"{path.name} is not an import counts file of format {COUNTS_FORMAT}"
        raise UnreadableCounts(msg)
    rows = document.get("outcomes")
    if not isinstance(rows, list) or len(rows) > MAX_OUTCOMES:
        msg = f"{path.name}: outcomes is not a list of at most {MAX_OUTCOMES}"
        raise UnreadableCounts(msg)
    outcomes = [outcome_row(row) for row in rows]
    if len({(o.result, o.reason) for o in outcomes}) != len(outcomes):
        msg = f"{path.name} counts one outcome twice"
        raise UnreadableCounts(msg)
    return sorted(outcomes, key=lambda o: (o.result, o.reason))


def outcome_row(row: object) -> Outcome:
    """One outcome of the file: {result, reason, count, last_at}, each checked."""
    match row:
        case {
            "result": str(result),
            "reason": str(reason),
            "count": int(count),
            "last_at": str(at),
        }:
            whole = not isinstance(count, bool) and count >= 0  # JSON true is no count
            if result in RESULTS and REASON.fullmatch(reason) and whole:
                try:
                    return Outcome(result, reason, count, parse_timestamp(at))
                except ValueError:
                    pass
    msg = f"not an import outcome: {row!r}"
    raise UnreadableCounts(msg)


def encode_counts(outcomes: list[Outcome]) -> bytes:
    """The file's content: JSON, outcomes by result then reason."""
    rows = [
        {
            "result": o.result,
            "reason": o.reason,
            "count": o.count,
            "last_at": format_timestamp(o.last_at),
        }
        for o in sorted(outcomes, key=lambda o: (o.result, o.reason))
    ]
    return (json.dumps({"format": COUNTS_FORMAT, "outcomes": rows}, indent=1) + "\n").encode()


def count_outcome(path: Path, result: str, reason: str, at: datetime) -> None:
    """Add one import that ended with `result` for `reason` at `at` (hold the writer lock).

    OSError if the file cannot be written; a damaged file is replaced by counts from zero.
    """
    if result not in RESULTS:
        msg = f"not an import result: {result!r}"
        raise ValueError(msg)
    if not REASON.fullmatch(reason):
        reason = OTHER_REASON  # never fail an import over a label: the trail has the reason
    try:
        outcomes = {(o.result, o.reason): o for o in read_counts(path)}
    except (UnreadableCounts, OSError):
        outcomes = {}
    earlier = outcomes.get((result, reason))
    if earlier is None:
        outcomes[result, reason] = Outcome(result, reason, 1, at)
    else:
        outcomes[result, reason] = replace(earlier, count=earlier.count + 1, last_at=at)
    kept = sorted(outcomes.values(), key=lambda o: o.last_at, reverse=True)[:MAX_OUTCOMES]
    atomic_write_bytes(path, encode_counts(kept), mode=COUNTS_MODE)
