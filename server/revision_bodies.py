"""The bodies of the forecast revision answers: GET /api/v1/revisions and /items/{id}/revision.

Which version is compared with is decided first (`against_of`: the one asked for, else the one
before the current one), so that a refusal is a 4xx before any cache or query, and so that the
answer's ETag can name it. The rows come from the pair's table (server/compared.py), through the
SQL of appliance/data/revisions.py that defines every change and total.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.exceptions import HTTPException, NotFoundException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_503_SERVICE_UNAVAILABLE

from appliance.data import store_layout as layout
from appliance.data.revisions import (
    COMPARED,
    DROPPED,
    ITEM_REVISION_SQL,
    NEW,
    TOTALS_SQL,
    WINDOW_RULE,
    PairInfo,
    Span,
    comparison_base,
    horizon_of,
)
from appliance.data.store import DataStore, DataVersion
from appliance.errors import StoreError, UnknownVersion, VersionDamaged
from server.bodies import traceability
from server.compared import ComparedVersions, RevisionPair
from server.data import VersionHandle
from server.schemas import (
    CategoryRevision,
    ItemRevision,
    ItemRevisionSeries,
    Revisions,
    RevisionTotals,
    RevisionVersion,
    RevisionWindow,
    SiteRevision,
)

SORTS = {
    "change": "abs(forecast_change) DESC NULLS LAST, item_id",
    "change_pct": "abs(forecast_change_pct) DESC NULLS LAST, item_id",
    "risk": "abs(max_stockout_risk_change) DESC NULLS LAST, item_id",
    "item_id": "item_id",
}
STATUSES = ("all", COMPARED, NEW, DROPPED)
NO_AGAINST = "-none"  # the ETag variant of an answer with nothing to compare with


class SameVersion(HTTPException):
    """A version compared with itself: a request to fix, not an empty answer."""

    status_code = HTTP_400_BAD_REQUEST


class AgainstUnusable(HTTPException):
    """The version to compare with is in the store but cannot be read: a fault of the node."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE


def against_of(store: DataStore, current: str, requested: str | None) -> DataVersion | None:
    """The version to compare `current` with (None: there is none); 400/404/503 refusals."""
    if requested == current:
        msg = f"against={requested} is the current version; compare it with another one"
        raise SameVersion(detail=msg, extra={"reason": "same-version"})
    try:
        return comparison_base(store, current, requested)
    except UnknownVersion as exc:
        raise NotFoundException(detail=str(exc), extra={"reason": exc.reason}) from exc
    except StoreError as exc:
        raise AgainstUnusable(detail=str(exc), extra={"reason": "against-unreadable"}) from exc


def comparison(
    store: DataStore, current: str, requested: str | None
) -> tuple[DataVersion | None, str]:
    """The version to compare `current` with (against_of) and what the answer's ETag adds.

    The ETag names the version compared with, since the default can change; with none, the
    newest version on the node, which the answer's note may name as a later one to compare with.
    """
    against = against_of(store, current, requested)
    if against is not None:
        return against, f"-{against.vid}"
    ids = store.version_ids()
    return None, f"{NO_AGAINST}-{ids[-1] if ids else ''}"


def unusable(exc: StoreError) -> AgainstUnusable:
    """The 503 of a version to compare with that fails its check or cannot be opened."""
    reason = "against-damaged" if isinstance(exc, VersionDamaged) else "against-unreadable"
    return AgainstUnusable(detail=str(exc), extra={"reason": reason})


def _day(span: Span | None, end: bool) -> str | None:
    if span is None:
        return None
    return (span.end if end else span.start).isoformat()


def _window(span: Span | None) -> RevisionWindow | None:
    if span is None:
        return None
    return RevisionWindow(WINDOW_RULE, span.start.isoformat(), span.end.isoformat(), span.days)


def _side(vid: str, meta: dict[str, Any], horizon: Span | None, items: int) -> RevisionVersion:
    return RevisionVersion(
        version=vid,
        dataset_id=meta["dataset_id"],
        model_version=meta["model_version"],
        source=meta["source"],
        generated_at=meta["generated_at"],
        horizon_start=_day(horizon, end=False),
        horizon_end=_day(horizon, end=True),
        items=items,
    )


def _report_meta(version: DataVersion) -> dict[str, Any]:
    report = version.report
    return {
        "dataset_id": report.dataset_id,
        "model_version": report.model_version,
        "source": report.source,
        "generated_at": report.generated_at,
    }


def _span_text(span: Span | None) -> str:
    return f"{span.start.isoformat()} to {span.end.isoformat()}" if span else "no horizon"


def pair_note(info: PairInfo, new: int, dropped: int) -> str | None:
    """What differs between the two versions besides the numbers, in one sentence, or None."""
    parts = []
    if new or dropped:
        parts.append(
            f"the item sets differ: {new:,} item(s) only in {info.current} (new), "
            f"{dropped:,} only in {info.against} (dropped)"
        )
    horizons = (
        f"{info.current}: {_span_text(info.current_horizon)}, "
        f"{info.against}: {_span_text(info.against_horizon)}"
    )
    if info.window is None:
        parts.append(f"the horizons do not overlap ({horizons}): forecast totals are not compared")
    elif info.current_horizon != info.against_horizon:
        window = info.window
        parts.append(
            f"the horizons differ ({horizons}): forecasts are compared over the {window.days} "
            f"day(s) both cover, {_span_text(window)}"
        )
    if not parts:
        return None
    text = "; ".join(parts)
    return text[0].upper() + text[1:]


def nothing_before_note(store: DataStore, current: str) -> str:
    """Why there is no version to compare `current` with, and what to ask instead."""
    number = layout.version_number(current) or 0
    later = [vid for vid in store.version_ids() if (layout.version_number(vid) or 0) > number]
    if later:
        return (
            f"There is no version before {current} to compare it with; name a later one, "
            f"e.g. against={later[-1]}"
        )
    return f"{current} is the first version on this node: there is nothing to compare it with yet"


def _count(handle: VersionHandle, sql: str, params: list[Any]) -> int:
    row = handle.cursor().execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _alone(handle: VersionHandle) -> RevisionVersion:
    """The current version's side when there is nothing to compare it with."""
    horizon = horizon_of(handle.cursor(), handle.meta["generated_at"])
    items = _count(handle, "SELECT count(*) FROM dim_item", [])
    return _side(handle.vid, handle.meta, horizon, items)


def _filters(category: str | None, site: str | None) -> tuple[str, list[Any]]:
    return "(? IS NULL OR category = ?) AND (? IS NULL OR site = ?)", [
        category,
        category,
        site,
        site,
    ]


def _totals(
    pair: RevisionPair, rows: str, params: list[Any], key: str | None
) -> list[tuple[Any, ...]]:
    group = f"GROUP BY {key}" if key else ""
    sql = TOTALS_SQL.format(key=key or "NULL", rows=rows, group=group)
    return pair.query(sql, params)


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of TOTALS_SQL (its group's key first) as the fields of RevisionTotals."""
    return dict(zip(RevisionTotals.__struct_fields__, row[1:], strict=True))


def _sides(
    pair: RevisionPair, handle: VersionHandle, against: DataVersion
) -> tuple[RevisionVersion, RevisionVersion, int, int]:
    """Both versions' sides of `pair`, and its numbers of new and dropped items."""
    counts = pair.query(
        f"SELECT count(*) FILTER (WHERE status <> '{DROPPED}'), count(*) FILTER (WHERE status <> '{NEW}'), "
        f"count(*) FILTER (WHERE status = '{NEW}'), count(*) FILTER (WHERE status = '{DROPPED}') "
        f"FROM {pair.table}"
    )[0]
    mine, theirs, new, dropped = (int(value) for value in counts)
    info = pair.info
    current = _side(handle.vid, handle.meta, info.current_horizon, mine)
    other = _side(against.vid, _report_meta(against), info.against_horizon, theirs)
    return current, other, new, dropped


def revisions_body(
    compared: ComparedVersions,
    store: DataStore,
    handle: VersionHandle,
    against: DataVersion | None,
    category: str | None,
    site: str | None,
    status: str,
    sort: str,
    offset: int,
    limit: int,
) -> bytes:
    """GET /api/v1/revisions (in a worker thread)."""
    if against is None:
        body = Revisions(
            current=_alone(handle), against=None, note=nothing_before_note(store, handle.vid),
            window=None, precomputed=False, totals=None, by_category=[], by_site=[], items=[],
            total=0, next_offset=None, data=traceability(handle),
        )  # fmt: skip
        return msgspec.json.encode(body)
    try:
        with compared.pair(handle, against) as pair:
            return _revisions(pair, handle, against, category, site, status, sort, offset, limit)
    except StoreError as exc:
        raise unusable(exc) from exc


def _revisions(
    pair: RevisionPair,
    handle: VersionHandle,
    against: DataVersion,
    category: str | None,
    site: str | None,
    status: str,
    sort: str,
    offset: int,
    limit: int,
) -> bytes:
    rows = ITEM_REVISION_SQL.format(table=pair.table)
    where, params = _filters(category, site)
    selected = f"{rows} WHERE {where}"
    totals = RevisionTotals(**_fields(_totals(pair, selected, params, None)[0]))
    by_category = [
        CategoryRevision(**_fields(row), category=row[0])
        for row in _totals(pair, rows, [], "category")
    ]
    by_site = [SiteRevision(**_fields(row), site=row[0]) for row in _totals(pair, rows, [], "site")]
    if status != "all":
        where += " AND status = ?"
        params = [*params, status]
    listed = pair.query(
        f"SELECT * FROM ({rows}) WHERE {where} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    total = pair.query(f"SELECT count(*) FROM ({rows}) WHERE {where}", params)[0][0]
    current, other, new, dropped = _sides(pair, handle, against)
    after = offset + len(listed)
    body = Revisions(
        current=current, against=other, note=pair_note(pair.info, new, dropped),
        window=_window(pair.info.window), precomputed=pair.precomputed, totals=totals,
        by_category=by_category, by_site=by_site, items=[ItemRevision(*row) for row in listed],
        total=int(total), next_offset=after if after < total else None, data=traceability(handle),
    )  # fmt: skip
    return msgspec.json.encode(body)


Forecast = tuple[list[str], list[float], list[float], list[float]]


def forecast_of(handle: VersionHandle, item_id: str) -> Forecast:
    """An item's forecast days in a version: its series, or a query for a version without."""
    if handle.has_series():
        part = handle.series(item_id, None, None)
        if part is None:
            return [], [], [], []
        return part.dates, part.yhat, part.yhat_lower, part.yhat_upper
    rows = (
        handle.cursor()
        .execute(
            "SELECT strftime(date, '%Y-%m-%d'), yhat, yhat_lower, yhat_upper FROM fact_forecast "
            "WHERE item_id = ? ORDER BY date",
            [item_id],
        )
        .fetchall()
    )
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], [], []]
    return columns[0], columns[1], columns[2], columns[3]


def item_revision_body(
    compared: ComparedVersions,
    store: DataStore,
    handle: VersionHandle,
    against: DataVersion | None,
    item_id: str,
) -> bytes:
    """GET /api/v1/items/{item_id}/revision (in a worker thread)."""
    if against is None:
        return _item_alone(store, handle, item_id)
    try:
        with compared.pair(handle, against) as pair:
            rows = ITEM_REVISION_SQL.format(table=pair.table)
            found = pair.query(f"SELECT * FROM ({rows}) WHERE item_id = ?", [item_id])
            if not found:
                msg = f"no item {item_id} in data version {handle.vid} or {against.vid}"
                raise NotFoundException(detail=msg)
            revision = ItemRevision(*found[0])
            current, other, new, dropped = _sides(pair, handle, against)
            info = pair.info
        mine: Forecast = ([], [], [], [])
        if revision.status != DROPPED:
            mine = forecast_of(handle, item_id)
        theirs: Forecast = ([], [], [], [])
        if revision.status != NEW:
            with compared.version(against) as other_handle:
                theirs = forecast_of(other_handle, item_id)
    except StoreError as exc:
        raise unusable(exc) from exc
    dates = mine[0] if revision.status != DROPPED else theirs[0]
    yhat: list[float | None] = list(mine[1]) if revision.status != DROPPED else [None] * len(dates)
    at = {day: n for n, day in enumerate(theirs[0])}
    aligned = [at.get(day) for day in dates]

    def column(values: list[float]) -> list[float | None]:
        return [None if n is None else values[n] for n in aligned]

    body = ItemRevisionSeries(
        item_id=item_id, name=revision.name, category=revision.category, site=revision.site,
        unit=revision.unit, current=current, against=other, note=pair_note(info, new, dropped),
        window=_window(info.window), revision=revision, dates=dates, yhat=yhat,
        against_yhat=column(theirs[1]), against_yhat_lower=column(theirs[2]),
        against_yhat_upper=column(theirs[3]),
        against_days_outside=len(theirs[0]) - sum(n is not None for n in aligned),
        data=traceability(handle),
    )  # fmt: skip
    return msgspec.json.encode(body)


def _item_alone(store: DataStore, handle: VersionHandle, item_id: str) -> bytes:
    """An item's revision answer when there is nothing to compare the current version with."""
    item = (
        handle.cursor()
        .execute("SELECT name, category, site, unit FROM dim_item WHERE item_id = ?", [item_id])
        .fetchone()
    )
    if item is None:
        raise NotFoundException(detail=f"no item {item_id} in data version {handle.vid}")
    dates, yhat, _lower, _upper = forecast_of(handle, item_id)
    nothing: list[float | None] = [None] * len(dates)
    name, category, site, unit = item
    body = ItemRevisionSeries(
        item_id=item_id, name=name, category=category, site=site, unit=unit,
        current=_alone(handle), against=None, note=nothing_before_note(store, handle.vid),
        window=None, revision=None, dates=dates, yhat=list(yhat), against_yhat=nothing,
        against_yhat_lower=list(nothing), against_yhat_upper=list(nothing),
        against_days_outside=0, data=traceability(handle),
    )  # fmt: skip
    return msgspec.json.encode(body)
