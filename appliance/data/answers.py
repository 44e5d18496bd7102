"""Precomputed answers: each item's whole timeseries, inventory and series, built once at import.

A version never changes, so the server's most common lookups are answered at import: DuckDB
renders each item's JSON body, the body is gzip-compressed, appended to answers.bin, and its
(kind, item_id, offset, length, crc32) goes into the `answer_index` table of the version's
database. The `series` kind is the item's forecast as binary columns (appliance/data/series.py),
stored as it is, for date ranges. A server worker maps answers.bin and loads the index once; a
request is then a dict lookup, a slice and a CRC-32 of the slice (about 1.5 us for 9 KB, so a
byte flipped in answers.bin while it is served is never sent), with no query at all.

The answers are built in partitions: consecutive ranges of item_id holding at most
PARTITION_ROWS fact rows each, one query per partition and fact table. A query's memory is
bounded by its partition, not by the pack (one GROUP BY over every row ran out of memory at 5x
field scale), and the fact tables are sorted by item_id, so each query reads only its partition's
row groups. The forecast query gives each item's timeseries and series answers at once, and
each is written where it belongs as it comes: the series first (a series record's size follows
from its number of days, so where the series end is known before any is written), then the
timeseries, then the inventory. The answers of a kind are written in item_id order whatever the
partitions, so answers.bin and the index do not depend on them.
"""

from __future__ import annotations

import array
import gzip
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from appliance.data.series import (
    COUNT,
    DATE_CODE,
    SERIES,
    VALUE_CODE,
    VALUE_COLUMNS,
    record_size,
)
from appliance.data.store_layout import VERSION_ANSWERS
from appliance.progress import Progress

if TYPE_CHECKING:
    import duckdb

INDEX_TABLE = "answer_index"
TIMESERIES = "timeseries"
INVENTORY = "inventory"
KINDS = (TIMESERIES, INVENTORY, SERIES)  # the server tells a known item by KINDS[0]
GZIP_LEVEL = 1  # level 6 is 18% smaller but 3x slower to build; the import time matters more
# Fact rows (forecast and inventory) per answer query: about 1,400 items of 730 days. Measured at
# field scale, see docs/performance.md ("Imports at 1x, 5x and 10x field scale").
PARTITION_ROWS = 1_000_000

# Forecast and inventory rows per item in item_id order: the partitions, and the series' size.
ITEM_ROWS_SQL = """
    SELECT item_id, sum(forecast), sum(inventory) FROM (
        SELECT item_id, count(*) AS forecast, 0 AS inventory FROM fact_forecast GROUP BY item_id
        UNION ALL
        SELECT item_id, 0, count(*) FROM fact_inventory GROUP BY item_id
    ) GROUP BY item_id ORDER BY item_id
"""


# The query of each fact table, for the items of the partition $first..$last, one row per item:
# item_id, then the columns its kinds' answers are made of (see ANSWERS). DuckDB renders each
# JSON body, so no Python loop touches the rows; `meta` is the one-row table of the version's
# identity. Each item's days are gathered in one list of structs, sorted once, and split into
# the columns (a list per column, each with its own ORDER BY, sorts once per column: 1.7x slower).
FORECAST_DAYS_SQL = """
    FROM (
        SELECT f.item_id,
            any_value(d.name) AS name, any_value(d.category) AS category,
            any_value(d.site) AS site, any_value(d.unit) AS unit,
            list({
                'date': f.date, 'yhat': f.yhat, 'yhat_lower': f.yhat_lower,
                'yhat_upper': f.yhat_upper, 'actual': f.actual
            } ORDER BY f.date) AS days
        FROM fact_forecast f JOIN dim_item d USING (item_id)
        WHERE f.item_id BETWEEN $first AND $last AND d.item_id BETWEEN $first AND $last
        GROUP BY f.item_id
    ) CROSS JOIN meta m
    ORDER BY item_id
"""
TIMESERIES_BODY_SQL = """
    to_json({
        'item_id': item_id,
        'name': name, 'category': category, 'site': site, 'unit': unit,
        'version': m.version, 'dataset_id': m.dataset_id,
        'model_version': m.model_version, 'source': m.source,
        'generated_at': m.generated_at,
        'points': len(days),
        'dates': [strftime(day.date, '%Y-%m-%d') FOR day IN days],
        'yhat': [day.yhat FOR day IN days],
        'yhat_lower': [day.yhat_lower FOR day IN days],
        'yhat_upper': [day.yhat_upper FOR day IN days],
        'actual': [day.actual FOR day IN days]
    })::VARCHAR
"""
# A series record's numbers as the hex digits of their big-endian bits (a BIT of a number is its
# bits), two columns: the days, then day by day its yhat, yhat_lower, yhat_upper and actual (NaN
# where null). Handing DuckDB's lists to Python one float at a time took longer than all the rest
# of the series.
SERIES_COLUMNS_SQL = """
    array_to_string([
        hex((day.date - DATE '1970-01-01')::INTEGER::BIT::BLOB) FOR day IN days
    ], ''),
    array_to_string([
        hex(day.yhat::BIT::BLOB || day.yhat_lower::BIT::BLOB || day.yhat_upper::BIT::BLOB
            || coalesce(day.actual, 'NaN'::DOUBLE)::BIT::BLOB) FOR day IN days
    ], '')
"""
QUERY_SQL = {
    TIMESERIES: f"SELECT item_id, {TIMESERIES_BODY_SQL}, {SERIES_COLUMNS_SQL} {FORECAST_DAYS_SQL}",
    INVENTORY: """
        SELECT item_id, to_json({
            'item_id': item_id,
            'name': name, 'category': category, 'site': site, 'unit': unit,
            'lead_time_days': lead_time_days, 'unit_cost': unit_cost,
            'version': m.version, 'dataset_id': m.dataset_id,
            'model_version': m.model_version, 'source': m.source,
            'generated_at': m.generated_at,
            'on_hand_now': on_hand_now,
            'reorder_point': reorder_point,
            'safety_stock': safety_stock,
            'days_of_cover_now': days_of_cover_now,
            'max_stockout_risk': max_stockout_risk,
            'first_below_reorder_point': first_below_reorder_point,
            'dates': [strftime(day.date, '%Y-%m-%d') FOR day IN days],
            'on_hand': [day.on_hand FOR day IN days],
            'days_of_cover': [day.days_of_cover FOR day IN days],
            'stockout_risk': [day.stockout_risk FOR day IN days]
        })::VARCHAR
        FROM (
            SELECT i.item_id,
                any_value(d.name) AS name, any_value(d.category) AS category,
                any_value(d.site) AS site, any_value(d.unit) AS unit,
                any_value(d.lead_time_days) AS lead_time_days,
                any_value(d.unit_cost) AS unit_cost,
                arg_min(i.on_hand, i.date) AS on_hand_now,
                arg_min(i.reorder_point, i.date) AS reorder_point,
                arg_min(i.safety_stock, i.date) AS safety_stock,
                arg_min(i.days_of_cover, i.date) AS days_of_cover_now,
                max(i.stockout_risk) AS max_stockout_risk,
                min(i.date) FILTER (WHERE i.on_hand < i.reorder_point)
                    AS first_below_reorder_point,
                list({
                    'date': i.date, 'on_hand': i.on_hand, 'days_of_cover': i.days_of_cover,
                    'stockout_risk': i.stockout_risk
                } ORDER BY i.date) AS days
            FROM fact_inventory i JOIN dim_item d USING (item_id)
            WHERE i.item_id BETWEEN $first AND $last AND d.item_id BETWEEN $first AND $last
            GROUP BY i.item_id
        ) CROSS JOIN meta m
        ORDER BY item_id
    """,
}


OVERVIEW_TABLE = "item_overview"
OUTLOOK_DAYS = 30

# One row per item with what lists and summaries filter and sort on; the horizon starts the day
# after the version's generated_at.
OVERVIEW_SQL = f"""
    CREATE TABLE {OVERVIEW_TABLE} AS
    SELECT d.item_id, d.name, d.category, d.site, d.unit, d.lead_time_days, d.unit_cost,
           inv.on_hand_now, inv.days_of_cover_now, inv.max_stockout_risk,
           inv.first_below_reorder_point, round(coalesce(fc.forecast_next_30d, 0), 3) AS forecast_next_30d
    FROM dim_item d
    LEFT JOIN (
        SELECT item_id, arg_min(on_hand, date) AS on_hand_now,
               arg_min(days_of_cover, date) AS days_of_cover_now,
               max(stockout_risk) AS max_stockout_risk,
               min(date) FILTER (WHERE on_hand < reorder_point) AS first_below_reorder_point
        FROM fact_inventory GROUP BY item_id
    ) inv USING (item_id)
    LEFT JOIN (
        SELECT item_id, sum(yhat) AS forecast_next_30d FROM fact_forecast, meta
        WHERE date > CAST(meta.generated_at AS TIMESTAMPTZ)::DATE
          AND date <= CAST(meta.generated_at AS TIMESTAMPTZ)::DATE + {OUTLOOK_DAYS}
        GROUP BY item_id
    ) fc USING (item_id)
    ORDER BY d.item_id
"""


def compress(body: bytes) -> bytes:
    """gzip framing, so the bytes can be sent as they are with Content-Encoding: gzip."""
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def decompress(data: bytes) -> bytes:
    """The JSON body of a stored answer, for clients that do not accept gzip."""
    return zlib.decompress(data, wbits=31)


IndexRow = tuple[str, str, int, int, int]  # kind, item_id, offset, length, crc32
Row = tuple[Any, ...]  # one item's row of a fact table's query


def _json_answer(row: Row) -> bytes:
    """The stored bytes of a JSON answer: its body (the row's second column), gzip'd."""
    return compress(row[1].encode())


def _little_endian(code: str, hex_digits: str) -> array.array[Any]:
    """The big-endian numbers of `hex_digits` as an array that tobytes() gives little-endian."""
    column = array.array(code, bytes.fromhex(hex_digits))
    column.byteswap()  # big-endian bytes read as native, swapped: on any host, little-endian bytes
    return column


def _series_answer(row: Row) -> bytes:
    """The stored bytes of a series answer: the record of appliance/data/series.py, as it is."""
    item_id, _body, days_hex, values_hex = row
    days = _little_endian(DATE_CODE, days_hex)
    values = _little_endian(VALUE_CODE, values_hex)  # day by day: yhat, yhat_lower, ...
    width = len(VALUE_COLUMNS)
    if len(values) != len(days) * width:
        msg = f"series of {item_id}: {len(days)} days but {len(values)} values"
        raise ValueError(msg)
    columns = [values[column::width].tobytes() for column in range(width)]
    return b"".join([COUNT.pack(len(days)), days.tobytes(), *columns])


# The kinds each fact table's query answers, each with what makes its stored bytes of a row.
ANSWERS: dict[str, tuple[tuple[str, Callable[[Row], bytes]], ...]] = {
    TIMESERIES: ((TIMESERIES, _json_answer), (SERIES, _series_answer)),
    INVENTORY: ((INVENTORY, _json_answer),),
}


@dataclass(frozen=True)
class AnswerPlan:
    """How a version's answers are built: the partitions, and the bytes of all its series."""

    ranges: list[tuple[str, str]]  # consecutive (first, last) item_id, both included
    series_bytes: int


def plan_answers(con: duckdb.DuckDBPyConnection, max_rows: int) -> AnswerPlan:
    """Partitions of at most `max_rows` fact rows (an item with more has one of its own)."""
    ranges: list[tuple[str, str]] = []
    first = last = ""
    rows = series_bytes = 0
    for item_id, forecast, inventory in con.execute(ITEM_ROWS_SQL).fetchall():
        count = int(forecast) + int(inventory)
        if rows and rows + count > max_rows:
            ranges.append((first, last))
            rows = 0
        if not rows:
            first = item_id
        last = item_id
        rows += count
        series_bytes += record_size(int(forecast)) if forecast else 0
    if rows:
        ranges.append((first, last))
    return AnswerPlan(ranges, series_bytes)


def _create_meta(con: duckdb.DuckDBPyConnection, metadata: dict[str, str]) -> None:
    """The one-row temporary table `meta` of the version's identity, on this connection."""
    fields = ("version", "dataset_id", "model_version", "source", "generated_at")
    con.execute(f"CREATE TEMP TABLE meta ({', '.join(f'{f} VARCHAR' for f in fields)})")
    con.execute("INSERT INTO meta VALUES (?, ?, ?, ?, ?)", [metadata[f] for f in fields])


def _partitions(
    con: duckdb.DuckDBPyConnection, metadata: dict[str, str], ranges: list[tuple[str, str]]
) -> Iterator[tuple[str, list[Row]]]:
    """(query, rows) of each fact table's query on every partition, the timeseries' first."""
    cursor = con.cursor()  # a connection of its own: this runs in the fetching thread
    try:
        _create_meta(cursor, metadata)
        for query, sql in QUERY_SQL.items():
            for first, last in ranges:
                yield query, cursor.execute(sql, {"first": first, "last": last}).fetchall()
    finally:
        cursor.close()


def _one_ahead(items: Iterator[tuple[str, list[Row]]]) -> Iterator[tuple[str, list[Row]]]:
    """The items of `items`, each made in a thread while the caller handles the one before.

    DuckDB releases the GIL while it runs a query, so the next partition's query runs while this
    one's answers are compressed and written; at most three partitions are in memory.
    """
    with ThreadPoolExecutor(1) as thread:
        ahead = thread.submit(next, items, None)
        while (item := ahead.result()) is not None:
            ahead = thread.submit(next, items, None)
            yield item


class _AnswerFile:
    """A place in answers.bin that answers are written to one after the other, and their index."""

    def __init__(self, out: BinaryIO, offset: int) -> None:
        self.out = out
        self.offset = offset
        self.index: list[IndexRow] = []

    def append(self, kind: str, items: list[str], answers: Iterator[bytes]) -> None:
        """Write the answers of `items`, in order, and index them."""
        for item_id, data in zip(items, answers, strict=True):
            self.out.write(data)
            self.index.append((kind, item_id, self.offset, len(data), zlib.crc32(data)))
            self.offset += len(data)


Pending = tuple[_AnswerFile, str, list[str], Iterator[bytes]]  # where, kind, items, answers


def _write(pending: deque[Pending], keep: int) -> None:
    """Append the oldest pending answers to their files until `keep` batches are left."""
    while len(pending) > keep:
        file, kind, items, answers = pending.popleft()
        file.append(kind, items, answers)


def _insert_index(con: duckdb.DuckDBPyConnection, index: list[IndexRow]) -> None:
    """Bulk-insert the index as one list per column (row-by-row inserts take seconds at field scale)."""
    columns = [[row[i] for row in index] for i in range(5)]
    # Unnesting columns of a subquery is faster than unnesting the parameters themselves.
    con.execute(
        f"INSERT INTO {INDEX_TABLE} "
        "SELECT unnest(kinds), unnest(items), unnest(offsets), unnest(lengths), unnest(crcs) "
        "FROM (SELECT ?::VARCHAR[] AS kinds, ?::VARCHAR[] AS items, ?::BIGINT[] AS offsets, "
        "?::BIGINT[] AS lengths, ?::BIGINT[] AS crcs)",
        columns,
    )


def build_answers(
    con: duckdb.DuckDBPyConnection,
    version_dir: Path,
    metadata: dict[str, str],
    progress: Progress,
    partition_rows: int = PARTITION_ROWS,
) -> dict[str, int]:
    """Write answers.bin and the answer_index table; returns the number of answers per kind."""
    _create_meta(con, metadata)
    con.execute(OVERVIEW_SQL)
    con.execute("DROP TABLE meta")
    con.execute(
        f"CREATE TABLE {INDEX_TABLE} (kind VARCHAR, item_id VARCHAR, "
        "offset_bytes BIGINT, length_bytes BIGINT, crc32 BIGINT, PRIMARY KEY (kind, item_id))"
    )
    plan = plan_answers(con, partition_rows)
    ranges = plan.ranges
    progress(f"answers: {len(ranges):,} partition(s) of at most {partition_rows:,} fact rows")
    counts = dict.fromkeys(KINDS, 0)
    left = dict.fromkeys(QUERY_SQL, len(ranges))
    path = version_dir / VERSION_ANSWERS
    # Two handles on answers.bin: the series from its start, the rest from where the series end.
    with path.open("wb") as head, path.open("r+b") as tail, ThreadPoolExecutor(2) as pool:
        tail.seek(plan.series_bytes)
        series, others = _AnswerFile(head, 0), _AnswerFile(tail, plan.series_bytes)
        files = {SERIES: series, TIMESERIES: others, INVENTORY: others}
        # zlib releases the GIL: one partition is compressed by the pool while the next is fetched.
        pending: deque[Pending] = deque()
        for query, rows in _one_ahead(_partitions(con, metadata, ranges)):
            items = [row[0] for row in rows]
            for kind, encode in ANSWERS[query]:
                pending.append((files[kind], kind, items, pool.map(encode, rows)))
                counts[kind] += len(rows)
            left[query] -= 1
            _write(pending, keep=len(ANSWERS[query]) if left[query] else 0)
            if not left[query]:
                for kind, _encode in ANSWERS[query]:
                    progress(f"{kind} answers: {counts[kind]:,} items precomputed")
    if series.offset != plan.series_bytes:
        msg = f"the series took {series.offset:,} bytes, {plan.series_bytes:,} were planned"
        raise ValueError(msg)
    _insert_index(con, series.index + others.index)
    return counts
