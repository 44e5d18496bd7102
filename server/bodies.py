"""The JSON bodies of the data answers made per request: item pages and date ranges.

A version's item summaries are in memory (server.item_index) and its forecasts are binary columns
(appliance.data.series), so both answers are made without a query. A version imported before
those existed is answered by the SQL below, which is also what the in-memory answers are held to
(tests/integration/test_answer_equivalence.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import date
from typing import Any

import msgspec
from litestar.exceptions import ValidationException

from appliance.data.answers import OVERVIEW_TABLE
from server.data import VersionHandle
from server.item_index import OVERVIEW_COLUMNS, sort_value
from server.schemas import ItemsPage, ItemSummary, Timeseries, Traceability

# Each value sort of server.item_index in SQL: the value (nulls as the index counts them) and
# whether it goes highest first; ties by item_id.
SORT_SQL = {
    "risk": ("coalesce(max_stockout_risk, 0)", True),
    "cover": ("coalesce(days_of_cover_now, 'infinity'::DOUBLE)", False),
    "units": ("coalesce(forecast_next_30d, 0)", True),
}
NULL_AS = {"risk": 0.0, "cover": math.inf, "units": 0.0}


def traceability(handle: VersionHandle) -> Traceability:
    """The version identity every data answer carries."""
    meta = handle.meta
    return Traceability(
        handle.vid, meta["dataset_id"], meta["model_version"], meta["source"], meta["generated_at"]
    )


def encode_cursor(sort: str, item_id: str, value: float | None) -> str:
    """An opaque token holding where the next page starts (sort value and id of the last row)."""
    position = [sort, item_id, value]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(token: str, sort: str) -> tuple[str, float | None]:
    """The (item_id, sort value) a page token points after; 400 if it is not one of ours."""
    msg = "cursor is not a token this endpoint gave out (or was made for another sort)"
    try:
        kind, item_id, value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        # An int too large for a float overflows here (a cursor of ours holds a float or null).
        finite = value is None or (type(value) in (int, float) and math.isfinite(value))
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise ValidationException(detail=msg) from exc
    if kind != sort or not isinstance(item_id, str) or not finite:
        raise ValidationException(detail=msg)
    return item_id, value


def like_pattern(text: str) -> str:
    """A case-insensitive substring pattern with LIKE wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_items_query(
    handle: VersionHandle,
    q: str | None,
    category: str | None,
    site: str | None,
    sort: str,
    cursor: str | None,
    limit: int,
) -> bytes:
    """Run the item search and encode the page (in a worker thread)."""
    where = ["(? IS NULL OR category = ?)", "(? IS NULL OR site = ?)"]
    params: list[Any] = [category, category, site, site]
    if q:
        where.append("(item_id ILIKE ? ESCAPE '\\' OR name ILIKE ? ESCAPE '\\')")
        params += [like_pattern(q), like_pattern(q)]
    total_row = (
        handle.cursor()
        .execute(f"SELECT count(*) FROM {OVERVIEW_TABLE} WHERE {' AND '.join(where)}", params)
        .fetchone()
    )
    order = "item_id"
    if sort in SORT_SQL:
        value, descending = SORT_SQL[sort]
        order = f"{value} {'DESC' if descending else 'ASC'}, item_id"
    if cursor is not None:
        after_item, after_value = decode_cursor(cursor, sort)
        if sort in SORT_SQL:
            beyond = "<" if descending else ">"
            where.append(f"({value} {beyond} ? OR ({value} = ? AND item_id > ?))")
            cut = NULL_AS[sort] if after_value is None else after_value
            params += [cut, cut, after_item]
        else:
            where.append("item_id > ?")
            params.append(after_item)
    sql = f"SELECT {OVERVIEW_COLUMNS} FROM {OVERVIEW_TABLE} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
    rows = handle.cursor().execute(sql, [*params, limit + 1]).fetchall()
    page, more = rows[:limit], len(rows) > limit
    items = [ItemSummary(*row) for row in page]
    last = items[-1] if more and items else None
    next_token = encode_cursor(sort, last.item_id, sort_value(sort, last)) if last else None
    total = int(total_row[0]) if total_row else 0
    return msgspec.json.encode(ItemsPage(items, next_token, total, traceability(handle)))


def timeseries_query(
    handle: VersionHandle, item_id: str, start: date | None, end: date | None
) -> bytes:
    """One item's forecast between two dates (in a worker thread)."""
    con = handle.cursor()
    item = con.execute(
        f"SELECT name, category, site, unit FROM {OVERVIEW_TABLE} WHERE item_id = ?", [item_id]
    ).fetchone()
    rows = con.execute(
        "SELECT strftime(date, '%Y-%m-%d'), yhat, yhat_lower, yhat_upper, actual FROM fact_forecast "
        "WHERE item_id = ? AND date >= coalesce(?, DATE '0001-01-01') AND date <= coalesce(?, DATE '9999-12-31') "
        "ORDER BY date",
        [item_id, start, end],
    ).fetchall()
    name, category, site, unit = item or ("", "", "", "")
    meta = handle.meta
    body = Timeseries(
        item_id=item_id,
        name=name,
        category=category,
        site=site,
        unit=unit,
        version=handle.vid,
        dataset_id=meta["dataset_id"],
        model_version=meta["model_version"],
        source=meta["source"],
        generated_at=meta["generated_at"],
        points=len(rows),
        dates=[row[0] for row in rows],
        yhat=[row[1] for row in rows],
        yhat_lower=[row[2] for row in rows],
        yhat_upper=[row[3] for row in rows],
        actual=[row[4] for row in rows],
    )
    return msgspec.json.encode(body)


def items_page(
    handle: VersionHandle,
    q: str | None,
    category: str | None,
    site: str | None,
    sort: str,
    cursor: str | None,
    limit: int,
) -> bytes:
    """A page of `GET /api/v1/items`: from memory, or by SQL for a version without the index."""
    index = handle.items
    if index is None:
        return list_items_query(handle, q, category, site, sort, cursor, limit)
    after = decode_cursor(cursor, sort) if cursor is not None else None
    page = index.page(q, category, site, sort, after, limit)
    last = page.last
    next_token = encode_cursor(sort, last.item_id, sort_value(sort, last)) if last else None
    return msgspec.json.encode(ItemsPage(page.items, next_token, page.total, traceability(handle)))


def range_body(handle: VersionHandle, item_id: str, start: date | None, end: date | None) -> bytes:
    """One item's forecast from `start` to `end`: sliced from its series, or by SQL without one."""
    item = handle.items.item(item_id) if handle.items is not None else None
    part = handle.series(item_id, start, end) if item is not None and handle.has_series() else None
    if item is None or part is None:
        return timeseries_query(handle, item_id, start, end)
    meta = handle.meta
    body = Timeseries(
        item_id=item_id,
        name=item.name,
        category=item.category,
        site=item.site,
        unit=item.unit,
        version=handle.vid,
        dataset_id=meta["dataset_id"],
        model_version=meta["model_version"],
        source=meta["source"],
        generated_at=meta["generated_at"],
        points=len(part.dates),
        dates=part.dates,
        yhat=part.yhat,
        yhat_lower=part.yhat_lower,
        yhat_upper=part.yhat_upper,
        actual=part.actual,
    )
    return msgspec.json.encode(body)
