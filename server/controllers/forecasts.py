"""Forecast KPIs, aggregated over all items, a category, a site, or both."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from appliance.data.answers import OVERVIEW_TABLE
from appliance.data.revisions import AT_RISK
from server.bodies import traceability
from server.data import VersionHandle
from server.responses import READ_ERRORS, cached_answer, require_version, runtime
from server.schemas import ForecastSummary, Kpi
from server.security import require_viewer

Filter = Annotated[str | None, Parameter(max_length=64)]


def kpi_scope(category: str | None, site: str | None) -> str:
    """The fact_metrics grain that matches the filters ("none" when none does)."""
    if category and site:
        return "none"
    return "category" if category else "site" if site else "global"


def summary_query(handle: VersionHandle, category: str | None, site: str | None) -> bytes:
    """Counts from item_overview and KPIs from fact_metrics for the filters (in a worker thread)."""
    con = handle.cursor()
    filters = "(? IS NULL OR category = ?) AND (? IS NULL OR site = ?)"
    params = [category, category, site, site]
    items, at_risk, units = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE max_stockout_risk >= ?), coalesce(sum(forecast_next_30d), 0) "
        f"FROM {OVERVIEW_TABLE} WHERE {filters}",
        [AT_RISK, *params],
    ).fetchone() or (0, 0, 0.0)
    scope = kpi_scope(category, site)
    kpis = con.execute(
        "SELECT metric, value, period FROM fact_metrics WHERE scope = ? AND item_id IS NULL "
        "AND category IS NOT DISTINCT FROM ? AND site IS NOT DISTINCT FROM ? ORDER BY metric, period",
        [scope, category if scope == "category" else None, site if scope == "site" else None],
    ).fetchall()
    categories = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT category FROM {OVERVIEW_TABLE} ORDER BY 1"
        ).fetchall()
    ]
    sites = [
        row[0]
        for row in con.execute(f"SELECT DISTINCT site FROM {OVERVIEW_TABLE} ORDER BY 1").fetchall()
    ]
    body = ForecastSummary(
        category, site, scope, int(items), int(at_risk), round(float(units), 3),
        [Kpi(*row) for row in kpis], categories, sites, traceability(handle),
    )  # fmt: skip
    return msgspec.json.encode(body)


class ForecastsController(Controller):
    """Aggregated, precomputed forecast KPIs."""

    path = "/api/v1/forecasts"
    tags = ["forecasts"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get(
        "/summary",
        operation_id="get_forecast_summary",
        summary="KPIs for all items, a category and/or a site",
        responses=READ_ERRORS,
    )
    async def get_summary(
        self, request: Request[Any, Any, Any], category: Filter = None, site: Filter = None
    ) -> Response[ForecastSummary]:
        with runtime(request).data.lease() as leased:
            handle = require_version(leased)
            return await cached_answer(
                request, handle, lambda: summary_query(handle, category, site)
            )
