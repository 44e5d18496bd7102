"""Response and request shapes of the API (msgspec Structs; the OpenAPI schema comes from them)."""

from __future__ import annotations

from typing import Any

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """What went wrong, in one line, with the id to find the request in the logs."""

    status: int
    code: str
    message: str
    request_id: str
    reason: str | None = None


class ErrorBody(msgspec.Struct):
    """The one error envelope of every error response."""

    error: ErrorDetail


class Traceability(msgspec.Struct):
    """Where the numbers come from: every data answer carries it."""

    version: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str


class Timeseries(msgspec.Struct):
    """Daily forecast of one item with its interval, and actuals where observed (columns)."""

    item_id: str
    name: str
    category: str
    site: str
    unit: str
    version: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str
    points: int
    dates: list[str]
    yhat: list[float]
    yhat_lower: list[float]
    yhat_upper: list[float]
    actual: list[float | None]


class Inventory(msgspec.Struct):
    """Projected stock position of one item over the forecast horizon."""

    item_id: str
    name: str
    category: str
    site: str
    unit: str
    lead_time_days: int
    unit_cost: float | None
    version: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str
    on_hand_now: float | None
    reorder_point: float | None
    safety_stock: float | None
    days_of_cover_now: float | None
    max_stockout_risk: float | None
    first_below_reorder_point: str | None
    dates: list[str]
    on_hand: list[float]
    days_of_cover: list[float | None]
    stockout_risk: list[float]


class ItemSummary(msgspec.Struct):
    """One item in a list, with what the overview sorts and filters on."""

    item_id: str
    name: str
    category: str
    site: str
    unit: str
    max_stockout_risk: float | None
    days_of_cover_now: float | None
    forecast_next_30d: float


class ItemsPage(msgspec.Struct):
    """A page of items; pass `next` back as `cursor` for the following page (null at the end)."""

    items: list[ItemSummary]
    next: str | None
    total: int
    data: Traceability


class Kpi(msgspec.Struct):
    """One KPI from fact_metrics."""

    metric: str
    value: float
    period: str


class ForecastSummary(msgspec.Struct):
    """Aggregated KPIs for all items, a category, a site, or both."""

    category: str | None
    site: str | None
    kpi_scope: str
    items: int
    items_at_risk: int
    forecast_units_next_30d: float
    kpis: list[Kpi]
    categories: list[str]
    sites: list[str]
    data: Traceability


class DataVersion(msgspec.Struct):
    """One imported data version and where it came from."""

    version: str
    current: bool
    pack_id: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str
    imported_at: str
    imported_by: str | None
    signer: dict[str, str] | None
    rows: dict[str, int]
    # The `by` of the version's import event in the audit trail: {"via": "cli", "user", "host"}
    # for `appliance import` on the node, {"via": "api", "token", "role", "client",
    # "request_id", "host"} for an upload; null when the trail does not have it.
    imported_via: dict[str, Any] | None = None


class AuditTrailStatus(msgspec.Struct):
    """Whether the audit trail's hash chain is intact (`appliance history verify`)."""

    ok: bool
    lines: int
    first_bad_line: int | None
    detail: str


class TableExport(msgspec.Struct):
    """One gold table of a version, and where to download it (GET /api/v1/export/...)."""

    table: str
    rows: int | None
    filters: list[str]
    csv: str
    parquet: str


class VersionExports(msgspec.Struct):
    """The tables a kept version offers for export, its own links naming it."""

    version: str
    current: bool
    dataset_id: str
    generated_at: str
    tables: list[TableExport]


class DataVersions(msgspec.Struct):
    """Every published version (oldest first) and the audit trail of imports and rollbacks."""

    current: str | None
    versions: list[DataVersion]
    history: list[dict[str, Any]]
    audit_trail: AuditTrailStatus
    exports: list[VersionExports] = msgspec.field(default_factory=list)


class RollbackRequest(msgspec.Struct):
    """Which version to serve."""

    version: str


class ImportResult(msgspec.Struct):
    """A pack uploaded and published."""

    version: str
    previous: str | None
    pack_id: str
    dataset_id: str
    generated_at: str
    rows: dict[str, int]


class Check(msgspec.Struct):
    """One health check; one that is not `required` is reported but does not fail readiness."""

    name: str
    ok: bool
    detail: str
    required: bool = True


class Health(msgspec.Struct):
    """Health of this worker: status, data version, the no-ML compliance check."""

    status: str
    worker: int
    version: str | None
    checks: list[Check]
    ml_importable: list[str]
    ml_loaded: list[str]


class RevisionWindow(msgspec.Struct):
    """The days both versions' horizons cover: forecast totals are sums over these days only."""

    rule: str  # "overlap"
    start: str
    end: str
    days: int


class RevisionVersion(msgspec.Struct):
    """One side of a comparison: the version, its identity, its horizon and its item count."""

    version: str
    dataset_id: str
    model_version: str
    source: str
    generated_at: str
    horizon_start: str | None
    horizon_end: str | None
    items: int


class ItemRevision(msgspec.Struct):
    """How one item's forecast and inventory changed (current - against; see docs/api.md)."""

    item_id: str
    name: str
    category: str
    site: str
    unit: str
    status: str  # compared, new or dropped
    days_current: int
    days_against: int
    forecast_total_current: float | None
    forecast_total_against: float | None
    forecast_change: float | None
    forecast_change_pct: float | None
    first_below_reorder_point_current: str | None
    first_below_reorder_point_against: str | None
    first_below_reorder_point_change_days: int | None
    max_stockout_risk_current: float | None
    max_stockout_risk_against: float | None
    max_stockout_risk_change: float | None


class RevisionTotals(msgspec.Struct):
    """Counts and forecast totals of a set of items (all those selected, a category, a site)."""

    items_compared: int
    items_new: int
    items_dropped: int
    items_changed: int
    forecast_total_current: float | None
    forecast_total_against: float | None
    forecast_change: float | None
    forecast_change_pct: float | None
    forecast_total_new_items: float | None
    forecast_total_dropped_items: float | None
    items_at_risk_current: int
    items_at_risk_against: int
    items_below_reorder_point_current: int
    items_below_reorder_point_against: int


class CategoryRevision(RevisionTotals):
    """The totals of one category."""

    category: str


class SiteRevision(RevisionTotals):
    """The totals of one site."""

    site: str


class Revisions(msgspec.Struct):
    """What changed between the current version and another, with one page of items."""

    current: RevisionVersion
    against: RevisionVersion | None
    note: str | None
    window: RevisionWindow | None
    precomputed: bool
    totals: RevisionTotals | None
    by_category: list[CategoryRevision]
    by_site: list[SiteRevision]
    items: list[ItemRevision]
    total: int
    next_offset: int | None
    data: Traceability


class ItemRevisionSeries(msgspec.Struct):
    """One item's revision, with the other version's forecast on the current one's days."""

    item_id: str
    name: str
    category: str
    site: str
    unit: str
    current: RevisionVersion
    against: RevisionVersion | None
    note: str | None
    window: RevisionWindow | None
    revision: ItemRevision | None
    dates: list[str]
    yhat: list[float | None]
    against_yhat: list[float | None]
    against_yhat_lower: list[float | None]
    against_yhat_upper: list[float | None]
    against_days_outside: int
    data: Traceability
