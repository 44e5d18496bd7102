"""Forecast revisions: what changed between the current version and another, overall and per item."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from server.controllers.items import ItemId
from server.responses import READ_ERRORS, cached_answer, require_version, runtime
from server.revision_bodies import (
    comparison,
    item_revision_body,
    revisions_body,
)
from server.schemas import ItemRevisionSeries, Revisions
from server.security import require_viewer

Against = Annotated[
    str | None,
    Parameter(
        pattern=r"^v[0-9]{4,9}$",
        description="The version to compare with (vNNNN); default: the one before the current one.",
    ),
]
Filter = Annotated[str | None, Parameter(max_length=64)]


class RevisionsController(Controller):
    """Forecast revisions between data versions (precomputed at import against the one before)."""

    path = "/api/v1"
    tags = ["revisions"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get(
        "/revisions",
        operation_id="get_revisions",
        summary="What changed since another version: totals, per category and site, items",
        responses=READ_ERRORS,
    )
    async def get_revisions(
        self,
        request: Request[Any, Any, Any],
        against: Against = None,
        category: Filter = None,
        site: Filter = None,
        status: Annotated[
            str,
            Parameter(
                pattern="^(all|compared|new|dropped)$",
                description="Which items to list: all, compared (in both), new or dropped.",
            ),
        ] = "all",
        sort: Annotated[
            str,
            Parameter(
                pattern="^(change|change_pct|risk|item_id)$",
                description="change (largest forecast change first), change_pct, risk or item_id.",
            ),
        ] = "change",
        offset: Annotated[int, Parameter(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> Response[Revisions]:
        rt = runtime(request)
        with rt.data.lease() as leased:
            handle = require_version(leased)
            # It reads the store (and, for a version it does not have, the audit trail).
            base, variant = await anyio.to_thread.run_sync(
                comparison, rt.store, handle.vid, against
            )

            def body() -> bytes:
                return revisions_body(
                    rt.compared, rt.store, handle, base, category, site, status, sort, offset, limit
                )

            return await cached_answer(request, handle, body, variant)

    @get(
        "/items/{item_id:str}/revision",
        operation_id="get_item_revision",
        summary="How one item's forecast changed, with the other version's forecast",
        responses=READ_ERRORS,
    )
    async def get_item_revision(
        self, request: Request[Any, Any, Any], item_id: ItemId, against: Against = None
    ) -> Response[ItemRevisionSeries]:
        rt = runtime(request)
        with rt.data.lease() as leased:
            handle = require_version(leased)
            # It reads the store (and, for a version it does not have, the audit trail).
            base, variant = await anyio.to_thread.run_sync(
                comparison, rt.store, handle.vid, against
            )

            def body() -> bytes:
                return item_revision_body(rt.compared, rt.store, handle, base, item_id)

            return await cached_answer(request, handle, body, variant)
