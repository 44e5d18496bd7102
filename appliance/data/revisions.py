"""Forecast revisions: what changed, item by item, between two data versions.

The definitions (docs/api.md, "Forecast revisions", says the same to API users):

- A version's **horizon** is the days after its `generated_at` (its UTC calendar day), up to the
  last day of its forecast.
- The **window** of a comparison is the days in both horizons: from the later start to the earlier
  end. Each version's forecast total of an item is the sum of its `yhat` over the window, so the
  two totals cover the same days; horizons that do not overlap have no window and no totals.
- The **inventory** fields are each version's own, over its own horizon, as its inventory answer
  gives them: the first day below the reorder point (null if none) and the highest stock-out risk.
- An item is **compared** (in both versions), **new** (only in the current one) or **dropped**
  (only in the one it is compared with); it is counted in the current version's category and
  site, a dropped item in its own version's.

The rows of a comparison are made in two steps. Each version's facts come from one query of its
own database (`item_facts`), so the two databases never need to be attached to one connection (a
server worker's connections have no external access, and cannot ATTACH). Then `build_pair` joins
the facts into a table of the connection that keeps them: the new version's own database at
import (`item_revision` and `revision_pair`, against the version before it), or an in-memory
database of a server worker for any other pair. The table holds the unrounded sums; the changes,
rounded as the API shows them, are computed by `ITEM_REVISION_SQL` and `TOTALS_SQL` when read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.data import store_layout as layout
from appliance.data.store import DataStore, DataVersion
from appliance.errors import StoreError, UnknownVersion
from appliance.packs.result_pack import parse_timestamp
from appliance.packs.table_checks import literal, quote
from appliance.progress import Progress

if TYPE_CHECKING:
    import duckdb

ITEM_REVISION_TABLE = "item_revision"  # the rows of the precomputed comparison
PAIR_TABLE = "revision_pair"  # its one row: which version, horizons and window
COMPARED, NEW, DROPPED = "compared", "new", "dropped"
AT_RISK = 0.5  # an item is "at risk" when its stock-out probability reaches this (the summary too)
WINDOW_RULE = "overlap"

# One row per item of a version (dim_item), with its forecast over the window ($start..$end;
# null bounds: no window, no days) and its inventory position as the inventory answer gives it.
# fsum (compensated) keeps a total independent of the order DuckDB adds the days in.
FACTS_SQL = """
    SELECT d.item_id, d.name, d.category, d.site, d.unit,
        coalesce(f.days, 0) AS days, f.total,
        i.first_below, i.max_risk
    FROM dim_item d
    LEFT JOIN (
        SELECT item_id, count(*) AS days, fsum(yhat) AS total FROM fact_forecast
        WHERE date BETWEEN $start AND $end GROUP BY item_id
    ) f USING (item_id)
    LEFT JOIN (
        SELECT item_id, min(date) FILTER (WHERE on_hand < reorder_point) AS first_below,
            max(stockout_risk) AS max_risk
        FROM fact_inventory GROUP BY item_id
    ) i USING (item_id)
    ORDER BY d.item_id
"""
FACT_TYPES = (
    "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "DOUBLE", "DATE", "DOUBLE",
)  # fmt: skip
FACT_NAMES = (
    "item_id",
    "name",
    "category",
    "site",
    "unit",
    "days",
    "total",
    "first_below",
    "max_risk",
)

PAIR_SQL = f"""
    SELECT coalesce(c.item_id, a.item_id) AS item_id,
        coalesce(c.name, a.name) AS name, coalesce(c.category, a.category) AS category,
        coalesce(c.site, a.site) AS site, coalesce(c.unit, a.unit) AS unit,
        CASE WHEN a.item_id IS NULL THEN '{NEW}' WHEN c.item_id IS NULL THEN '{DROPPED}'
            ELSE '{COMPARED}' END AS status,
        coalesce(c.days, 0) AS days_current, coalesce(a.days, 0) AS days_against,
        c.total AS total_current, a.total AS total_against,
        c.first_below AS first_below_current, a.first_below AS first_below_against,
        c.max_risk AS risk_current, a.max_risk AS risk_against
    FROM current_facts c FULL OUTER JOIN against_facts a ON c.item_id = a.item_id
    ORDER BY item_id
"""

# The fields of an item's revision, in the order of server.schemas.ItemRevision, from a pair
# table ({table}). Changes are current - against, from the unrounded sums.
ITEM_REVISION_SQL = """
    SELECT item_id, name, category, site, unit, status, days_current, days_against,
        round(total_current, 3) AS forecast_total_current,
        round(total_against, 3) AS forecast_total_against,
        round(total_current - total_against, 3) AS forecast_change,
        CASE WHEN total_against <> 0
            THEN round(100 * (total_current - total_against) / total_against, 2)
        END AS forecast_change_pct,
        strftime(first_below_current, '%Y-%m-%d') AS first_below_reorder_point_current,
        strftime(first_below_against, '%Y-%m-%d') AS first_below_reorder_point_against,
        date_diff('day', first_below_against, first_below_current)
            AS first_below_reorder_point_change_days,
        risk_current AS max_stockout_risk_current, risk_against AS max_stockout_risk_against,
        round(risk_current - risk_against, 4) AS max_stockout_risk_change
    FROM {table}
"""
# An item that changed: its forecast total (as shown), its days in the window, its first day
# below the reorder point or its risk differ.
CHANGED_SQL = f"""
    status = '{COMPARED}' AND (coalesce(forecast_change, 0) <> 0 OR days_current <> days_against
        OR first_below_reorder_point_current IS DISTINCT FROM first_below_reorder_point_against
        OR max_stockout_risk_current IS DISTINCT FROM max_stockout_risk_against)
"""
BOTH_TOTALS = (
    f"status = '{COMPARED}' AND forecast_total_current IS NOT NULL "
    "AND forecast_total_against IS NOT NULL"
)
# The totals of server.schemas.RevisionTotals (after the group's key, if any) over the rows of
# {rows} (ITEM_REVISION_SQL, filtered), with {key} the column of the group ({group}: GROUP BY
# it), or NULL and no {group} for one row of them all.
# The group's forecast totals add the item totals as shown (rounded), so they add up on screen.
TOTALS_SQL = f"""
    SELECT key, items_compared, items_new, items_dropped, items_changed,
        round(total_current, 3), round(total_against, 3),
        round(total_current - total_against, 3),
        CASE WHEN total_against <> 0
            THEN round(100 * (total_current - total_against) / total_against, 2) END,
        round(total_new, 3), round(total_dropped, 3),
        at_risk_current, at_risk_against, below_current, below_against
    FROM (
        SELECT {{key}} AS key,
            count(*) FILTER (WHERE status = '{COMPARED}') AS items_compared,
            count(*) FILTER (WHERE status = '{NEW}') AS items_new,
            count(*) FILTER (WHERE status = '{DROPPED}') AS items_dropped,
            count(*) FILTER (WHERE {CHANGED_SQL}) AS items_changed,
            fsum(forecast_total_current) FILTER (WHERE {BOTH_TOTALS}) AS total_current,
            fsum(forecast_total_against) FILTER (WHERE {BOTH_TOTALS}) AS total_against,
            fsum(forecast_total_current) FILTER (WHERE status = '{NEW}') AS total_new,
            fsum(forecast_total_against) FILTER (WHERE status = '{DROPPED}') AS total_dropped,
            count(*) FILTER (WHERE status <> '{DROPPED}' AND max_stockout_risk_current >= {AT_RISK})
                AS at_risk_current,
            count(*) FILTER (WHERE status <> '{NEW}' AND max_stockout_risk_against >= {AT_RISK})
                AS at_risk_against,
            count(*) FILTER (WHERE status <> '{DROPPED}'
                AND first_below_reorder_point_current IS NOT NULL) AS below_current,
            count(*) FILTER (WHERE status <> '{NEW}'
                AND first_below_reorder_point_against IS NOT NULL) AS below_against
        FROM ({{rows}}) {{group}}
    ) ORDER BY key
"""


@dataclass(frozen=True)
class Span:
    """Days from `start` to `end`, both included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """How many days the span holds."""
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class PairInfo:
    """What a comparison is: the two versions, their horizons and the window (None: none)."""

    current: str
    against: str
    current_horizon: Span | None
    against_horizon: Span | None
    window: Span | None


FactColumns = list[list[Any]]  # FACT_NAMES, one list each, in item_id order


def horizon_of(con: duckdb.DuckDBPyConnection, generated_at: str) -> Span | None:
    """The version's horizon: the day after generated_at's UTC day to its last forecast day."""
    start = parse_timestamp(generated_at).astimezone(UTC).date() + timedelta(days=1)
    row = con.execute("SELECT max(date) FROM fact_forecast").fetchone()
    end = row[0] if row else None
    if end is None or end < start:
        return None
    return Span(start, end)


def overlap(a: Span | None, b: Span | None) -> Span | None:
    """The days in both spans, or None."""
    if a is None or b is None:
        return None
    start, end = max(a.start, b.start), min(a.end, b.end)
    return Span(start, end) if start <= end else None


def item_facts(con: duckdb.DuckDBPyConnection, window: Span | None) -> FactColumns:
    """Every item of a version with its forecast over `window` and its inventory position."""
    bounds = {"start": window.start, "end": window.end} if window else {"start": None, "end": None}
    rows = con.execute(FACTS_SQL, bounds).fetchall()
    return (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in FACT_NAMES]
    )


def _load_facts(con: duckdb.DuckDBPyConnection, name: str, columns: FactColumns) -> None:
    """A temporary table `name` of the facts, from one list per column."""
    casts = ", ".join(f"?::{kind}[] AS c{n}" for n, kind in enumerate(FACT_TYPES))
    unnests = ", ".join(f"unnest(c{n}) AS {col}" for n, col in enumerate(FACT_NAMES))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {unnests} FROM (SELECT {casts})", columns
    )


def build_pair(
    con: duckdb.DuckDBPyConnection, table: str, current: FactColumns, against: FactColumns
) -> int:
    """Create `table` of one row per item of either version; returns its rows."""
    _load_facts(con, "current_facts", current)
    _load_facts(con, "against_facts", against)
    con.execute(f"CREATE TABLE {table} AS {PAIR_SQL}")
    con.execute("DROP TABLE current_facts")
    con.execute("DROP TABLE against_facts")
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def compare_versions(
    current: duckdb.DuckDBPyConnection,
    current_generated_at: str,
    against: duckdb.DuckDBPyConnection,
    against_generated_at: str,
) -> tuple[Span | None, Span | None, Span | None, FactColumns, FactColumns]:
    """(current horizon, against horizon, window, current facts, against facts) of a pair."""
    current_horizon = horizon_of(current, current_generated_at)
    against_horizon = horizon_of(against, against_generated_at)
    window = overlap(current_horizon, against_horizon)
    return (
        current_horizon,
        against_horizon,
        window,
        item_facts(current, window),
        item_facts(against, window),
    )


def _write_pair_info(con: duckdb.DuckDBPyConnection, info: PairInfo) -> None:
    spans = (info.current_horizon, info.against_horizon, info.window)
    con.execute(
        f"CREATE TABLE {PAIR_TABLE} (current VARCHAR NOT NULL, against VARCHAR NOT NULL, "
        "current_start DATE, current_end DATE, against_start DATE, against_end DATE, "
        "window_start DATE, window_end DATE)"
    )
    bounds = [
        bound for span in spans for bound in ((span.start, span.end) if span else (None, None))
    ]
    con.execute(
        f"INSERT INTO {PAIR_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [info.current, info.against, *bounds],
    )


def read_pair_info(con: duckdb.DuckDBPyConnection) -> PairInfo | None:
    """The precomputed comparison of a version's database, or None if it has none."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
        [PAIR_TABLE],
    ).fetchone()
    if not found or not found[0]:
        return None
    row = con.execute(f"SELECT * FROM {PAIR_TABLE}").fetchone()
    if row is None:
        return None
    current, against, *bounds = row

    def span(start: date | None, end: date | None) -> Span | None:
        return Span(start, end) if start is not None and end is not None else None

    return PairInfo(current, against, span(*bounds[0:2]), span(*bounds[2:4]), span(*bounds[4:6]))


@dataclass(frozen=True)
class RevisionBase:
    """The version an import precomputes its revisions against: the one before it."""

    vid: str
    database: Path
    generated_at: str


BASE_CATALOG = "revision_base"  # the version before, attached to the import's connection


def precompute_revisions(
    con: duckdb.DuckDBPyConnection,
    vid: str,
    generated_at: str,
    base: RevisionBase,
    progress: Progress,
) -> PairInfo:
    """Compare the version being built (`con`) with `base`; write item_revision and revision_pair.

    `base` is attached read-only to the import's own connection, so that reading it stays within
    the import's memory limit (server workers may have it open read-only too, which DuckDB
    allows), and detached before the import goes on.
    """
    started = time.perf_counter()
    here = con.execute("SELECT current_database()").fetchone()
    main = quote(str(here[0])) if here else "main"
    current_horizon = horizon_of(con, generated_at)
    con.execute(f"ATTACH {literal(str(base.database))} AS {BASE_CATALOG} (READ_ONLY)")
    try:
        con.execute(f"USE {BASE_CATALOG}")
        try:
            against_horizon = horizon_of(con, base.generated_at)
            window = overlap(current_horizon, against_horizon)
            against = item_facts(con, window)
        finally:
            con.execute(f"USE {main}")
    finally:
        con.execute(f"DETACH {BASE_CATALOG}")
    current = item_facts(con, window)
    rows = build_pair(con, ITEM_REVISION_TABLE, current, against)
    info = PairInfo(vid, base.vid, current_horizon, against_horizon, window)
    _write_pair_info(con, info)
    seconds = time.perf_counter() - started
    progress(f"revisions against {base.vid}: {rows:,} items in {seconds:.2f} s")
    return info


def comparison_base(store: DataStore, current: str, requested: str | None) -> DataVersion | None:
    """The version to compare `current` with: `requested`, else the one before (None if none).

    The one before is the highest-numbered published version below `current` (so after a
    rollback to v0001 there is none, whatever came later). UnknownVersion (reason
    no-such-version or version-removed) for a requested version that is not in the store,
    StoreError for one whose import report cannot be read; the caller refuses `requested ==
    current` itself.
    """
    ids = store.version_ids()
    if requested is not None:
        if requested in ids:
            return store.version(requested)
        imported = any(
            event.get("event") == "import" and event.get("version") == requested
            for event in store.history()
        )
        if imported:
            msg = f"version {requested} was imported on this node but is no longer in its store"
            raise UnknownVersion("version-removed", msg)
        msg = f"no version {requested} on this node"
        raise UnknownVersion("no-such-version", msg)
    number = layout.version_number(current) or 0
    for vid in reversed(ids):
        if (layout.version_number(vid) or 0) >= number:
            continue
        try:
            return store.version(vid)
        except StoreError:
            continue  # an unreadable report: `appliance versions --verify` names it
    return None
