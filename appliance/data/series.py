"""Each item's forecast as binary columns, so a date range is a slice, not a query.

A version never changes, so the import writes, beside each item's whole-timeseries answer, a
`series` answer (same answers.bin, same answer_index, same CRC-32): the item's fact_forecast rows
in date order as little-endian columns,

    u32 n | n x i32 date (days since 1970-01-01) | n x f64 yhat | n x f64 yhat_lower
          | n x f64 yhat_upper | n x f64 actual (NaN where actual is null)

36 n + 4 bytes (26 KB for 730 days). The registry holds yhat and its interval finite and actual
finite or null, so NaN is never a value and stands for null without ambiguity. A range request
bisects the dates and slices the five columns; the doubles go back to Python floats bit for bit,
so the answer is the one a query of fact_forecast gives. See docs/formats.md.
"""

from __future__ import annotations

import array
import bisect
import math
import struct
import sys
from dataclasses import dataclass
from datetime import date

SERIES = "series"
COUNT = struct.Struct("<I")
DATE_CODE = "i"  # array typecodes: 4-byte signed int and 8-byte double on every CPython platform
VALUE_CODE = "d"
VALUE_COLUMNS = ("yhat", "yhat_lower", "yhat_upper", "actual")
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LITTLE = sys.byteorder == "little"


class SeriesDamaged(ValueError):
    """A series record whose length does not match its count (never sliced)."""


def record_size(points: int) -> int:
    """The bytes of a record of `points` days."""
    return COUNT.size + points * (4 + 8 * len(VALUE_COLUMNS))


def encode_series(
    days: list[int],
    yhat: list[float],
    yhat_lower: list[float],
    yhat_upper: list[float],
    actual: list[float | None],
) -> bytes:
    """One item's record: `days` in increasing order (days since 1970-01-01), columns alike."""
    points = len(days)
    columns = (yhat, yhat_lower, yhat_upper, [math.nan if a is None else a for a in actual])
    if any(len(column) != points for column in columns):
        msg = "every column of a series has one value per day"
        raise ValueError(msg)
    parts = [COUNT.pack(points), _packed(DATE_CODE, days)]
    parts += [_packed(VALUE_CODE, column) for column in columns]
    return b"".join(parts)


def _packed(code: str, values: list[int] | list[float]) -> bytes:
    column = array.array(code, values)
    if not _LITTLE:
        column.byteswap()
    return column.tobytes()


def _column(code: str, data: bytes | memoryview) -> array.array:  # type: ignore[type-arg]
    column = array.array(code)
    column.frombytes(data)
    if not _LITTLE:
        column.byteswap()
    return column


@dataclass(frozen=True)
class SeriesSlice:
    """The rows of one item between two days, as the range answer lists them."""

    dates: list[str]
    yhat: list[float]
    yhat_lower: list[float]
    yhat_upper: list[float]
    actual: list[float | None]


def day_number(day: date) -> int:
    """Days since 1970-01-01, as a record stores its dates."""
    return day.toordinal() - EPOCH_ORDINAL


def slice_series(record: bytes | memoryview, start: date | None, end: date | None) -> SeriesSlice:
    """The days of `record` from `start` to `end`, both included (None: open on that side)."""
    if len(record) < COUNT.size:
        msg = "series record shorter than its count"
        raise SeriesDamaged(msg)
    (points,) = COUNT.unpack_from(record, 0)
    if len(record) != record_size(points):
        msg = f"series record of {len(record)} bytes for {points} days"
        raise SeriesDamaged(msg)
    view = memoryview(record)
    days = _column(DATE_CODE, view[COUNT.size : COUNT.size + 4 * points])
    first = 0 if start is None else bisect.bisect_left(days, day_number(start))
    last = points if end is None else bisect.bisect_right(days, day_number(end))
    last = max(first, last)
    base = COUNT.size + 4 * points
    columns = []
    for number in range(len(VALUE_COLUMNS)):
        at = base + 8 * points * number
        columns.append(_column(VALUE_CODE, view[at + 8 * first : at + 8 * last]).tolist())
    yhat, lower, upper, actual = columns
    if any(map(math.isnan, actual)):  # some actual is null (NaN): only then replace them
        actual = [None if math.isnan(value) else value for value in actual]
    return SeriesSlice(
        dates=_dates(days, first, last),
        yhat=yhat,
        yhat_lower=lower,
        yhat_upper=upper,
        actual=actual,
    )


def _dates(days: array.array, first: int, last: int) -> list[str]:  # type: ignore[type-arg]
    """YYYY-MM-DD of days[first:last]; a run of consecutive days is made once, then kept."""
    if last <= first:
        return []
    start, count = days[first], last - first
    if days[last - 1] - start != count - 1:  # not consecutive: day by day
        return list(map(_ISO_DAYS.__getitem__, days[first:last]))
    run = _RUNS.get((start, count))
    if run is None:
        run = tuple(map(_ISO_DAYS.__getitem__, range(start, start + count)))
        if len(_RUNS) >= RUNS_KEPT:
            _RUNS.clear()
        _RUNS[(start, count)] = run
    return list(run)


class _IsoDays(dict[int, str]):
    """YYYY-MM-DD of a day number, made once per day (a node's series share a few thousand)."""

    def __missing__(self, day: int) -> str:
        text = date.fromordinal(day + EPOCH_ORDINAL).isoformat()
        if len(self) < 1 << 16:
            self[day] = text
        return text


_ISO_DAYS = _IsoDays()
RUNS_KEPT = 4096
_RUNS: dict[tuple[int, int], tuple[str, ...]] = {}
