"""Items: search and list them, and each item's forecast timeseries."""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter

from appliance.data.answers import OVERVIEW_TABLE, TIMESERIES
from server.data import VersionHandle
from server.responses import (
    READ_ERRORS,
    cached_answer,
    precomputed_answer,
    require_version,
    runtime,
)
from server.schemas import ItemsPage, ItemSummary, Timeseries, Traceability
from server.security import require_viewer

ITEM_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ItemId = Annotated[str, Parameter(pattern=ITEM_ID_PATTERN, description="Item id, as in dim_item.")]
Filter = Annotated[str | None, Parameter(max_length=64)]
SORTS = {"item_id": "item_id", "risk": "coalesce(max_stockout_risk, 0) DESC, item_id"}
OVERVIEW_COLUMNS = (
    "item_id, name, category, site, unit, max_stockout_risk, days_of_cover_now, forecast_next_30d"
)


def traceability(handle: VersionHandle) -> Traceability:
    """The version identity every data answer carries."""
    meta = handle.meta
    return Traceability(
        handle.vid, meta["dataset_id"], meta["model_version"], meta["source"], meta["generated_at"]
    )


def encode_cursor(sort: str, row: tuple[Any, ...]) -> str:
    """An opaque token holding where the next page starts (sort key of the last row)."""
    position = [sort, row[0], row[5]]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(token: str, sort: str) -> tuple[str, float | None]:
    """The (item_id, risk) a page token points after; 400 if it is not one of ours."""
    msg = "cursor is not a token this endpoint gave out (or was made for another sort)"
    try:
        kind, item_id, risk = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationException(detail=msg) from exc
    finite = risk is None or (type(risk) in (int, float) and math.isfinite(risk))
    if kind != sort or not isinstance(item_id, str) or not finite:
        raise ValidationException(detail=msg)
    return item_id, risk


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
    if cursor is not None:
        after_item, after_risk = decode_cursor(cursor, sort)
        if sort == "risk":
            where.append(
                "(coalesce(max_stockout_risk, 0) < ? OR (coalesce(max_stockout_risk, 0) = ? AND item_id > ?))"
            )
            params += [after_risk or 0.0, after_risk or 0.0, after_item]
        else:
            where.append("item_id > ?")
            params.append(after_item)
    sql = f"SELECT {OVERVIEW_COLUMNS} FROM {OVERVIEW_TABLE} WHERE {' AND '.join(where)} ORDER BY {SORTS[sort]} LIMIT ?"
    rows = handle.cursor().execute(sql, [*params, limit + 1]).fetchall()
    page, more = rows[:limit], len(rows) > limit
    items = [ItemSummary(*row) for row in page]
    next_token = encode_cursor(sort, page[-1]) if more and page else None
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


class ItemsController(Controller):
    """Items and their forecasts."""

    path = "/api/v1/items"
    tags = ["items"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get(
        "/",
        operation_id="list_items",
        summary="Search and page through items",
        responses=READ_ERRORS,
    )
    async def list_items(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[
            str | None, Parameter(max_length=100, description="Substring of the id or name.")
        ] = None,
        category: Filter = None,
        site: Filter = None,
        sort: Annotated[
            str,
            Parameter(
                pattern="^(item_id|risk)$",
                description="item_id, or risk (highest stock-out risk first).",
            ),
        ] = "item_id",
        cursor: Annotated[
            str | None,
            Parameter(max_length=512, description="The `next` token of the previous page."),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> Response[ItemsPage]:
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            if cursor is not None:
                decode_cursor(cursor, sort)  # a bad token is a 400 before any cache or query
            return await cached_answer(
                request,
                handle,
                lambda: list_items_query(handle, q, category, site, sort, cursor, limit),
            )

    @get(
        "/{item_id:str}/timeseries",
        operation_id="get_timeseries",
        summary="Forecast, interval and actuals of one item",
        responses=READ_ERRORS,
    )
    async def get_timeseries(
        self,
        request: Request[Any, Any, Any],
        item_id: ItemId,
        start: Annotated[
            date | None, Parameter(query="from", description="First day (YYYY-MM-DD).")
        ] = None,
        end: Annotated[
            date | None, Parameter(query="to", description="Last day (YYYY-MM-DD).")
        ] = None,
    ) -> Response[Timeseries]:
        if start is not None and end is not None and start > end:
            raise ValidationException(detail="`from` is after `to`")
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            if not handle.has_item(item_id):
                raise NotFoundException(detail=f"no item {item_id} in data version {handle.vid}")
            if start is None and end is None:
                return precomputed_answer(request, handle, TIMESERIES, item_id)
            return await cached_answer(
                request, handle, lambda: timeseries_query(handle, item_id, start, end)
            )
