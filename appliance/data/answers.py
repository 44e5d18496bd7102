"""Precomputed answers: each item's whole timeseries and inventory, built once at import.

A version never changes, so the server's most common lookups are answered at import: DuckDB
renders each item's JSON body, the body is gzip-compressed, appended to answers.bin, and its
(kind, item_id, offset, length, crc32) goes into the `answer_index` table of the version's
database. A server worker maps answers.bin and loads the index once; a request is then a dict
lookup, a slice and a CRC-32 of the slice (about 1.5 us for 9 KB, so a byte flipped in
answers.bin while it is served is never sent), with no query at all.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from appliance.data.store_layout import VERSION_ANSWERS
from appliance.progress import Progress

if TYPE_CHECKING:
    import duckdb

INDEX_TABLE = "answer_index"
TIMESERIES = "timeseries"
INVENTORY = "inventory"
KINDS = (TIMESERIES, INVENTORY)
GZIP_LEVEL = 1  # level 6 is 18% smaller but 3x slower to build; the import time matters more
BATCH_ROWS = 512

# One JSON object per item; DuckDB renders it so no Python loop touches the 14.6 M rows.
# `meta` is the one-row table of the version's identity that build_answers fills.
BODY_SQL = {
    TIMESERIES: """
        SELECT f.item_id, to_json({
            'item_id': f.item_id,
            'name': any_value(d.name), 'category': any_value(d.category),
            'site': any_value(d.site), 'unit': any_value(d.unit),
            'version': any_value(m.version), 'dataset_id': any_value(m.dataset_id),
            'model_version': any_value(m.model_version), 'source': any_value(m.source),
            'generated_at': any_value(m.generated_at),
            'points': count(*),
            'dates': list(strftime(f.date, '%Y-%m-%d') ORDER BY f.date),
            'yhat': list(f.yhat ORDER BY f.date),
            'yhat_lower': list(f.yhat_lower ORDER BY f.date),
            'yhat_upper': list(f.yhat_upper ORDER BY f.date),
            'actual': list(f.actual ORDER BY f.date)
        })::VARCHAR
        FROM fact_forecast f JOIN dim_item d USING (item_id) CROSS JOIN meta m
        GROUP BY f.item_id ORDER BY f.item_id
    """,
    INVENTORY: """
        SELECT i.item_id, to_json({
            'item_id': i.item_id,
            'name': any_value(d.name), 'category': any_value(d.category),
            'site': any_value(d.site), 'unit': any_value(d.unit),
            'lead_time_days': any_value(d.lead_time_days), 'unit_cost': any_value(d.unit_cost),
            'version': any_value(m.version), 'dataset_id': any_value(m.dataset_id),
            'model_version': any_value(m.model_version), 'source': any_value(m.source),
            'generated_at': any_value(m.generated_at),
            'on_hand_now': arg_min(i.on_hand, i.date),
            'reorder_point': arg_min(i.reorder_point, i.date),
            'safety_stock': arg_min(i.safety_stock, i.date),
            'days_of_cover_now': arg_min(i.days_of_cover, i.date),
            'max_stockout_risk': max(i.stockout_risk),
            'first_below_reorder_point': min(i.date) FILTER (WHERE i.on_hand < i.reorder_point),
            'dates': list(strftime(i.date, '%Y-%m-%d') ORDER BY i.date),
            'on_hand': list(i.on_hand ORDER BY i.date),
            'days_of_cover': list(i.days_of_cover ORDER BY i.date),
            'stockout_risk': list(i.stockout_risk ORDER BY i.date)
        })::VARCHAR
        FROM fact_inventory i JOIN dim_item d USING (item_id) CROSS JOIN meta m
        GROUP BY i.item_id ORDER BY i.item_id
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


def _append(
    out: BinaryIO,
    batch: tuple[str, Iterator[tuple[str, bytes]]],
    index: list[IndexRow],
    offset: int,
) -> int:
    """Write one batch of compressed answers, index them, and return the next offset."""
    kind, answers = batch
    for item_id, data in answers:
        out.write(data)
        index.append((kind, item_id, offset, len(data), zlib.crc32(data)))
        offset += len(data)
    return offset


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
) -> dict[str, int]:
    """Write answers.bin and the answer_index table; returns the number of answers per kind."""
    fields = ("version", "dataset_id", "model_version", "source", "generated_at")
    con.execute(f"CREATE TEMP TABLE meta ({', '.join(f'{f} VARCHAR' for f in fields)})")
    con.execute("INSERT INTO meta VALUES (?, ?, ?, ?, ?)", [metadata[f] for f in fields])
    con.execute(OVERVIEW_SQL)
    con.execute(
        f"CREATE TABLE {INDEX_TABLE} (kind VARCHAR, item_id VARCHAR, "
        "offset_bytes BIGINT, length_bytes BIGINT, crc32 BIGINT, PRIMARY KEY (kind, item_id))"
    )
    counts: dict[str, int] = {}
    offset = 0
    index: list[IndexRow] = []
    # zlib releases the GIL: one batch is compressed by the pool while DuckDB renders the next.
    with (version_dir / VERSION_ANSWERS).open("wb") as out, ThreadPoolExecutor(2) as pool:
        for kind in KINDS:
            cursor = con.execute(BODY_SQL[kind])
            counts[kind] = 0
            pending: list[tuple[str, Iterator[tuple[str, bytes]]]] = []
            while batch := cursor.fetchmany(BATCH_ROWS):
                items = [item_id for item_id, _body in batch]
                pending.append(
                    (
                        kind,
                        zip(items, pool.map(compress, (b.encode() for _, b in batch)), strict=True),
                    )
                )
                if len(pending) > 1:
                    offset = _append(out, pending.pop(0), index, offset)
                counts[kind] += len(batch)
            for batch_answers in pending:
                offset = _append(out, batch_answers, index, offset)
            progress(f"{kind} answers: {counts[kind]:,} items precomputed")
    _insert_index(con, index)
    con.execute("DROP TABLE meta")
    return counts
