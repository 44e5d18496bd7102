"""The binary series of an item (appliance/data/series.py): what goes in comes out, sliced."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from appliance.data.series import (
    SeriesDamaged,
    day_number,
    encode_series,
    record_size,
    slice_series,
)

FIRST = date(2026, 1, 1)


def record(days: list[date], actual: list[float | None] | None = None) -> bytes:
    values = [float(n) + 0.1 for n in range(len(days))]
    return encode_series(
        [day_number(d) for d in days],
        values,
        [v - 1 for v in values],
        [v + 1 for v in values],
        actual if actual is not None else [v / 3 for v in values],
    )


def test_the_whole_series_comes_back_bit_for_bit() -> None:
    days = [FIRST + timedelta(days=n) for n in range(30)]
    actual: list[float | None] = [n / 7 if n < 20 else None for n in range(30)]
    part = slice_series(record(days, actual), None, None)
    assert part.dates == [d.isoformat() for d in days]
    assert part.yhat == [float(n) + 0.1 for n in range(30)]
    assert part.actual == actual


def test_a_range_includes_both_ends() -> None:
    days = [FIRST + timedelta(days=n) for n in range(30)]
    part = slice_series(record(days), FIRST + timedelta(days=5), FIRST + timedelta(days=9))
    assert part.dates == [(FIRST + timedelta(days=n)).isoformat() for n in range(5, 10)]
    assert part.yhat == [float(n) + 0.1 for n in range(5, 10)]
    assert part.yhat_lower == [float(n) - 0.9 for n in range(5, 10)]


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        (date(2020, 1, 1), date(2020, 12, 31), 0),
        (date(2030, 1, 1), None, 0),
        (None, date(2025, 12, 31), 0),
        (FIRST + timedelta(days=3), FIRST + timedelta(days=3), 1),
        (FIRST + timedelta(days=9), FIRST + timedelta(days=3), 0),
    ],
)
def test_ranges_outside_or_reversed_are_empty_or_small(
    start: date | None, end: date | None, count: int
) -> None:
    days = [FIRST + timedelta(days=n) for n in range(30)]
    part = slice_series(record(days), start, end)
    assert len(part.dates) == len(part.yhat) == len(part.actual) == count


def test_days_with_gaps_are_sliced_by_date_not_position() -> None:
    days = [FIRST + timedelta(days=n) for n in (0, 1, 5, 6, 10)]
    part = slice_series(record(days), FIRST + timedelta(days=2), FIRST + timedelta(days=6))
    assert part.dates == [(FIRST + timedelta(days=n)).isoformat() for n in (5, 6)]
    assert part.yhat == [2.1, 3.1]


def test_a_record_whose_length_does_not_match_its_count_is_damaged() -> None:
    data = record([FIRST, FIRST + timedelta(days=1)])
    assert len(data) == record_size(2)
    for broken in (data[:-1], data + b"\x00", data[:2]):
        with pytest.raises(SeriesDamaged):
            slice_series(broken, None, None)


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one value per day"):
        encode_series([1, 2], [1.0], [1.0, 2.0], [1.0, 2.0], [None, None])
