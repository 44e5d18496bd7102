"""Inventory: projected stock, reorder point, cover and stock-out risk of one item."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException

from appliance.answers import INVENTORY
from server.controllers.items import ItemId
from server.responses import (
    etag_for,
    gzip_answer,
    matches,
    not_modified,
    require_version,
    runtime,
    trace,
)
from server.schemas import Inventory
from server.security import require_viewer


class InventoryController(Controller):
    """Per-item inventory, precomputed at import."""

    path = "/api/v1/inventory"
    tags = ["inventory"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get("/{item_id:str}", operation_id="get_inventory", summary="Projected inventory of one item")
    async def get_inventory(
        self, request: Request[Any, Any, Any], item_id: ItemId
    ) -> Response[Inventory]:
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            etag = etag_for(handle, request)
            trace(request, handle)
            if matches(request, etag):
                return not_modified(handle, etag)
            stored = handle.answer(INVENTORY, item_id)
            if stored is None:
                raise NotFoundException(
                    detail=f"no inventory for item {item_id} in data version {handle.vid}"
                )
            return gzip_answer(request, handle, etag, stored)
