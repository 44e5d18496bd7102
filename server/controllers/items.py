"""Items: search and list them, and each item's forecast timeseries."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Parameter

from appliance.data.answers import TIMESERIES
from server.bodies import decode_cursor, items_page, range_body
from server.item_index import SORTS
from server.responses import (
    READ_ERRORS,
    cached_answer,
    fresh_answer,
    precomputed_answer,
    require_version,
    runtime,
)
from server.schemas import ItemsPage, Timeseries
from server.security import require_viewer

ITEM_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ItemId = Annotated[str, Parameter(pattern=ITEM_ID_PATTERN, description="Item id, as in dim_item.")]
Filter = Annotated[str | None, Parameter(max_length=64)]


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
                pattern=f"^({'|'.join(SORTS)})$",
                description="item_id; risk (highest stock-out risk first); cover (fewest days "
                "of cover first, items without a cover figure last); units (highest forecast "
                "for the next 30 days first). Ties in item_id order.",
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

            def page() -> bytes:
                return items_page(handle, q, category, site, sort, cursor, limit)

            if handle.items is not None:
                return fresh_answer(request, handle, page)  # from memory: not worth caching
            return await cached_answer(request, handle, page)

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

            def part() -> bytes:
                return range_body(handle, item_id, start, end)

            if handle.has_series() and handle.items is not None:
                return fresh_answer(request, handle, part)  # a slice: not worth caching
            return await cached_answer(request, handle, part)
