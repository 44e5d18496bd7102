"""Inventory: projected stock, reorder point, cover and stock-out risk of one item."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from appliance.data.answers import INVENTORY
from server.controllers.items import ItemId
from server.responses import READ_ERRORS, precomputed_answer, require_version, runtime
from server.schemas import Inventory
from server.security import require_viewer


class InventoryController(Controller):
    """Per-item inventory, precomputed at import."""

    path = "/api/v1/inventory"
    tags = ["inventory"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get(
        "/{item_id:str}",
        operation_id="get_inventory",
        summary="Projected inventory of one item",
        responses=READ_ERRORS,
    )
    async def get_inventory(
        self, request: Request[Any, Any, Any], item_id: ItemId
    ) -> Response[Inventory]:
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            return precomputed_answer(request, handle, INVENTORY, item_id)
