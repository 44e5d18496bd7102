"""The importer's counts file: counted, read back, written whole, and a damaged one told apart."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.data.import_counts import (
    COUNTS_FORMAT,
    FAULT,
    IMPORTED,
    MAX_OUTCOMES,
    NO_REASON,
    OTHER_REASON,
    REJECTED,
    Outcome,
    UnreadableCounts,
    count_outcome,
    read_counts,
)

FIRST = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)


@pytest.fixture
def counts(tmp_path: Path) -> Path:
    return tmp_path / "imports.json"


def written(path: Path, outcomes: list[object]) -> Path:
    path.write_text(json.dumps({"format": COUNTS_FORMAT, "outcomes": outcomes}))
    return path


def test_a_store_without_the_file_has_counted_nothing(counts: Path) -> None:
    assert read_counts(counts) == []


def test_each_outcome_is_counted_with_its_last_time(counts: Path) -> None:
    count_outcome(counts, IMPORTED, NO_REASON, FIRST)
    count_outcome(counts, REJECTED, "replay", FIRST)
    count_outcome(counts, REJECTED, "replay", LATER)
    count_outcome(counts, FAULT, "disk-full", LATER)
    assert read_counts(counts) == [
        Outcome(FAULT, "disk-full", 1, LATER),
        Outcome(IMPORTED, NO_REASON, 1, FIRST),
        Outcome(REJECTED, "replay", 2, LATER),
    ]


def test_the_file_is_replaced_whole_and_readable_by_the_group_only(counts: Path) -> None:
    count_outcome(counts, IMPORTED, NO_REASON, FIRST)
    count_outcome(counts, IMPORTED, NO_REASON, LATER)
    assert stat.S_IMODE(counts.stat().st_mode) == 0o640
    assert [p.name for p in counts.parent.iterdir()] == [counts.name]  # no temporary file left


def test_a_reason_that_is_not_a_short_code_is_counted_as_other(counts: Path) -> None:
    count_outcome(counts, REJECTED, 'Bad "pack"\nsecond line', FIRST)
    assert read_counts(counts) == [Outcome(REJECTED, OTHER_REASON, 1, FIRST)]


def test_an_unknown_result_is_a_mistake_of_the_caller(counts: Path) -> None:
    with pytest.raises(ValueError, match="not an import result"):
        count_outcome(counts, "skipped", NO_REASON, FIRST)


def test_a_damaged_file_is_counted_again_from_zero(counts: Path) -> None:
    counts.write_bytes(b'{"format": 1, "outcomes": [{"result": "imp')
    count_outcome(counts, REJECTED, "signature", LATER)
    assert read_counts(counts) == [Outcome(REJECTED, "signature", 1, LATER)]


GOOD_ROW = {"result": "imported", "reason": "none", "count": 3, "last_at": "2026-11-01T06:00:00Z"}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"format": 1, "outcomes": [{"result": "imp', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not an import counts file"),
        (b'{"format": 2, "outcomes": []}', "not an import counts file"),
        (b'{"format": 1, "outcomes": {}}', "not a list"),
        (json.dumps({"format": 1, "outcomes": [GOOD_ROW, GOOD_ROW]}).encode(), "twice"),
        (json.dumps({"format": 1, "outcomes": [GOOD_ROW] * (MAX_OUTCOMES + 1)}).encode(), "list"),
    ],
    ids=["torn", "binary", "foreign", "other_format", "outcomes_not_a_list", "twice", "too_many"],
)
def test_a_damaged_file_is_refused_for_what_is_wrong(
    counts: Path, content: bytes, why: str
) -> None:
    counts.write_bytes(content)
    with pytest.raises(UnreadableCounts, match=why):
        read_counts(counts)


@pytest.mark.parametrize(
    "row",
    [
        GOOD_ROW | {"result": "skipped"},
        GOOD_ROW | {"reason": 'x"} 1\nappliance_ready 1'},
        GOOD_ROW | {"count": -1},
        GOOD_ROW | {"count": True},
        GOOD_ROW | {"count": 1.5},
        GOOD_ROW | {"last_at": "yesterday"},
        {key: value for key, value in GOOD_ROW.items() if key != "count"},
        ["imported", "none", 3],
    ],
    ids=[
        "unknown_result",
        "reason_that_injects_a_line",
        "negative_count",
        "count_true",
        "fractional_count",
        "bad_time",
        "no_count",
        "row_not_an_object",
    ],
)
def test_an_outcome_row_out_of_shape_is_refused(counts: Path, row: object) -> None:
    with pytest.raises(UnreadableCounts, match="not an import outcome"):
        read_counts(written(counts, [row]))


def test_a_good_row_is_read(counts: Path) -> None:
    assert read_counts(written(counts, [GOOD_ROW])) == [Outcome(IMPORTED, NO_REASON, 3, FIRST)]
