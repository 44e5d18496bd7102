"""The audit trail's hash chain: every edit, removal, reordering or torn line is found and named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from appliance.data.history import AuditTrail, line_digest
from appliance.data.store_layout import HISTORY_CHAIN_FIELD, HISTORY_CHAIN_START


@pytest.fixture
def trail(tmp_path: Path) -> AuditTrail:
    trail = AuditTrail(tmp_path / "history.jsonl")
    for number in range(1, 5):
        trail.append({"event": "import", "version": f"v000{number}"})
    return trail


def lines_of(trail: AuditTrail) -> list[bytes]:
    return trail.path.read_bytes().splitlines()


def test_each_line_names_the_sha256_of_the_one_before(trail: AuditTrail) -> None:
    lines = lines_of(trail)
    assert json.loads(lines[0])[HISTORY_CHAIN_FIELD] == HISTORY_CHAIN_START
    for before, line in itertools.pairwise(lines):
        assert json.loads(line)[HISTORY_CHAIN_FIELD] == line_digest(before)
    check = trail.verify()
    assert (check.ok, check.lines, check.describe()) == (True, 4, "audit trail intact: 4 line(s)")


def test_an_empty_or_absent_trail_is_intact(tmp_path: Path) -> None:
    assert AuditTrail(tmp_path / "none.jsonl").verify().ok


def test_one_flipped_byte_names_its_line(trail: AuditTrail) -> None:
    data = bytearray(trail.path.read_bytes())
    data[data.index(b"v0002") + 4] ^= 0x01  # v0002 -> v0003: still valid JSON
    trail.path.write_bytes(bytes(data))
    check = trail.verify()
    assert (check.ok, check.first_bad_line) == (False, 3)
    assert "line 3: prev_sha256 does not match the line before it" in check.describe()
    assert [e["version"] for e in trail.events()] == ["v0001", "v0003", "v0003", "v0004"]


def test_a_flipped_byte_that_breaks_the_json_names_that_line(trail: AuditTrail) -> None:
    data = bytearray(trail.path.read_bytes())
    data[0] ^= 0xFF
    trail.path.write_bytes(bytes(data))
    check = trail.verify()
    assert (check.first_bad_line, check.problem) == (1, "not a JSON line (damaged or torn)")
    assert len(trail.events()) == 3  # the damaged line is skipped, never repaired


@pytest.mark.parametrize(
    ("change", "first_bad"),
    [
        (lambda lines: lines[:1] + lines[2:], 2),  # a line removed
        (lambda lines: [lines[1], lines[0], *lines[2:]], 1),  # two lines swapped
        (lambda lines: lines[1:], 1),  # the first line removed
        (lambda lines: [*lines[:2], lines[1], *lines[2:]], 3),  # a line repeated
        (lambda lines: [*lines[:3], lines[2]], 4),  # the last line replaced by a copy
    ],
    ids=["removed", "reordered", "head-cut", "repeated", "last-copied"],
)
def test_removed_or_reordered_lines_break_the_chain(trail: AuditTrail, change, first_bad) -> None:
    trail.path.write_bytes(b"\n".join(change(lines_of(trail))) + b"\n")
    assert trail.verify().first_bad_line == first_bad


def test_a_torn_last_line_is_reported_and_the_next_line_starts_anew(trail: AuditTrail) -> None:
    with trail.path.open("ab") as handle:
        handle.write(b'{"event": "imp')  # a power cut in the middle of a write
    trail.append({"event": "rollback", "version": "v0003"})
    lines = lines_of(trail)
    assert lines[4] == b'{"event": "imp'
    assert json.loads(lines[5])["event"] == "rollback"
    check = trail.verify()
    assert (check.first_bad_line, check.lines) == (5, 6)
    assert [e["event"] for e in trail.events()][-1] == "rollback"


def test_lines_from_before_the_chain_are_accepted_only_as_a_prefix(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "history.jsonl")
    trail.path.write_text('{"event": "import", "version": "v0001"}\n')
    trail.append({"event": "import", "version": "v0002"})
    check = trail.verify()
    assert (check.ok, check.legacy_lines) == (True, 1)
    assert "1 written before the chain" in check.describe()
    with trail.path.open("a") as handle:
        handle.write('{"event": "rollback", "version": "v0001"}\n')  # unchained, after the chain
    assert trail.verify().first_bad_line == 3


def test_a_very_long_last_line_is_still_chained(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "history.jsonl")
    trail.append({"event": "reject", "message": "x" * 200_000})
    trail.append({"event": "import"})
    assert trail.verify().ok


def test_a_damaged_last_line_is_found_through_the_head(trail: AuditTrail) -> None:
    data = bytearray(trail.path.read_bytes())
    data[data.index(b"v0004") + 4] ^= 0x01  # the last line: no line after it to break
    trail.path.write_bytes(bytes(data))
    check = trail.verify()
    assert (check.first_bad_line, check.problem) == (4, "does not match history.head")
    trail.append({"event": "import", "version": "v0005"})  # appending does not launder it
    check = trail.verify()
    assert check.first_bad_line == 5
    assert str(check.problem).startswith("prev_sha256 does not match the line before it")


def test_a_cut_off_tail_is_found_through_the_head(trail: AuditTrail) -> None:
    trail.path.write_bytes(b"\n".join(lines_of(trail)[:2]) + b"\n")
    assert trail.verify().first_bad_line == 2


def test_a_head_one_line_behind_is_what_a_crash_leaves(trail: AuditTrail) -> None:
    head = trail.head_path.read_bytes()
    trail.append({"event": "rollback", "version": "v0003"})
    trail.head_path.write_bytes(head)  # the crash came between the append and the head
    assert trail.verify().ok
