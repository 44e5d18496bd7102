"""Demo result tables for a telecom tower operator's spare parts, as an ML workstation exports them.

The tables stand in for real model output: no ML library runs here. DuckDB draws every number
from a hash of (seed, stream, item, day), so a spec always gives the same rows whatever the
thread count, and field scale (20,000 items x 730 days) stays vectorised and fast.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import ConfigError
from appliance.faults import node_fault
from appliance.fsio import fsync_path
from appliance.packs.pack_layout import METADATA_COLUMNS, TABLE_SUFFIX
from appliance.packs.schema_registry import TableSchema, load_registry
from appliance.progress import Progress

if TYPE_CHECKING:
    import duckdb

DEFAULT_ITEMS = 200
DEFAULT_DAYS = 365
DEFAULT_SEED = 7
DEFAULT_DATASET_ID = "demo-telecom-spares"
DEFAULT_MODEL_VERSION = "demo-ensemble-1.0"
DEFAULT_SOURCE = "ensemble"
DEFAULT_GENERATED_AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)

MAX_ITEMS = 1_000_000
MIN_DAYS = 14
MAX_DAYS = 3660
MAX_SEED = 2**31 - 1
MAX_HORIZON_DAYS = 90
BACKTEST_DAYS = 90
OUTLOOK_DAYS = 30
AT_RISK_THRESHOLD = 0.5
DEMO_TABLES = ("dim_item", "fact_forecast", "fact_inventory", "fact_metrics")

DUCKDB_MEMORY_LIMIT = "4GB"


@dataclass(frozen=True)
class DemoSpec:
    """What demo to generate: its size, its random seed and the traceability metadata."""

    items: int = DEFAULT_ITEMS
    days: int = DEFAULT_DAYS
    seed: int = DEFAULT_SEED
    dataset_id: str = DEFAULT_DATASET_ID
    model_version: str = DEFAULT_MODEL_VERSION
    source: str = DEFAULT_SOURCE
    generated_at: datetime = DEFAULT_GENERATED_AT

    def __post_init__(self) -> None:
        """Refuse sizes, seeds and metadata the generator cannot honour."""
        if not 1 <= self.items <= MAX_ITEMS:
            msg = f"demo items must be between 1 and {MAX_ITEMS:,}, got {self.items}"
            raise ConfigError(msg)
        if not MIN_DAYS <= self.days <= MAX_DAYS:
            msg = f"demo days must be between {MIN_DAYS} and {MAX_DAYS}, got {self.days}"
            raise ConfigError(msg)
        # The seed is mixed into 64-bit integer arithmetic inside DuckDB, which must not overflow.
        if not 0 <= self.seed <= MAX_SEED:
            msg = f"demo seed must be between 0 and {MAX_SEED}, got {self.seed}"
            raise ConfigError(msg)
        if self.generated_at.utcoffset() is None:
            msg = f"demo generated_at must carry a time zone, got {self.generated_at.isoformat()}"
            raise ConfigError(msg)
        for field_name in ("dataset_id", "model_version", "source"):
            if not getattr(self, field_name).strip():
                msg = f"demo {field_name} must not be empty"
                raise ConfigError(msg)

    @property
    def horizon_days(self) -> int:
        """Days forecast beyond the last observed day."""
        return min(MAX_HORIZON_DAYS, self.days // 4)

    @property
    def history_days(self) -> int:
        """Days with observed demand, ending on the day the results were generated."""
        return self.days - self.horizon_days

    @property
    def last_observed_day(self) -> date:
        """The UTC calendar day of generated_at: the last day with actuals."""
        return self.generated_at.astimezone(UTC).date()

    @property
    def first_day(self) -> date:
        """The first day covered by the forecast table."""
        return self.last_observed_day - timedelta(days=self.history_days - 1)

    @property
    def backtest_days(self) -> int:
        """Days at the end of history over which accuracy is measured."""
        return min(BACKTEST_DAYS, self.history_days)

    @property
    def outlook_days(self) -> int:
        """Days at the start of the horizon summarised as forward-looking KPIs."""
        return min(OUTLOOK_DAYS, self.horizon_days)


@dataclass(frozen=True)
class PartKind:
    """A kind of spare part or material from which demo items are drawn."""

    category: str
    part: str
    unit: str
    lot: int
    lead_days: tuple[int, int]
    unit_cost: tuple[float, float]
    demand_scale: float


# lot = units per issue: cable leaves the store in 10 m cuts, bolts in bags of 10, VRLA cells in
# strings of 4. demand_scale = typical lots per day relative to other parts.
PART_KINDS: tuple[PartKind, ...] = (
    PartKind("Radio", "RRU 2x40W B28", "ea", 1, (30, 60), (2500, 6000), 0.3),
    PartKind("Radio", "RRU 4x60W B3", "ea", 1, (30, 60), (4000, 9000), 0.3),
    PartKind("Radio", "BBU baseband board", "ea", 1, (25, 60), (3000, 8000), 0.2),
    PartKind("Radio", "SFP+ 10G LR module", "ea", 1, (10, 30), (80, 250), 1.0),
    PartKind("Radio", "MW ODU 15GHz", "ea", 1, (30, 60), (1500, 4000), 0.3),
    PartKind("Antenna", "Panel antenna 65deg 18dBi", "ea", 1, (20, 45), (400, 1500), 0.3),
    PartKind("Antenna", "MW dish 0.6m 15GHz", "ea", 1, (20, 50), (600, 1800), 0.2),
    PartKind("Antenna", "RET actuator", "ea", 1, (15, 40), (300, 900), 0.4),
    PartKind("Antenna", "Antenna clamp kit", "ea", 1, (5, 15), (20, 80), 1.5),
    PartKind("Antenna", "Jumper 1/2in 3m N-DIN", "ea", 1, (5, 20), (15, 60), 2.0),
    PartKind("Power", "Rectifier module 48V 3kW", "ea", 1, (20, 45), (600, 1500), 0.4),
    PartKind("Power", "DC breaker 32A", "ea", 1, (5, 20), (15, 60), 1.5),
    PartKind("Power", "Surge protection device DC", "ea", 1, (10, 30), (60, 250), 0.8),
    PartKind("Power", "NH fuse 63A", "ea", 1, (3, 10), (3, 12), 3.0),
    PartKind("Power", "Genset fuel filter", "ea", 1, (5, 15), (10, 40), 2.0),
    PartKind("Battery", "VRLA battery 12V 100Ah", "ea", 4, (15, 40), (150, 400), 0.5),
    PartKind("Battery", "VRLA battery 12V 150Ah", "ea", 4, (15, 40), (200, 550), 0.4),
    PartKind("Battery", "Li-ion battery 48V 100Ah", "ea", 1, (30, 60), (1200, 3000), 0.3),
    PartKind("Battery", "Battery interconnect kit", "ea", 1, (5, 15), (10, 40), 1.0),
    PartKind("Battery", "Battery monitor sensor", "ea", 1, (10, 30), (40, 150), 0.5),
    PartKind("Fiber", "ADSS fiber cable 12F", "m", 50, (10, 30), (0.8, 2.5), 0.6),
    PartKind("Fiber", "Drop cable 2F", "m", 25, (5, 20), (0.3, 1.0), 1.5),
    PartKind("Fiber", "Patch cord LC-LC SM 3m", "ea", 1, (3, 10), (2, 8), 3.0),
    PartKind("Fiber", "Splice protection sleeve 60mm", "ea", 10, (3, 10), (0.1, 0.5), 3.0),
    PartKind("Fiber", "Splice closure 24F", "ea", 1, (10, 30), (40, 150), 0.5),
    PartKind("Cabling", "Power cable 16mm2", "m", 10, (5, 20), (2, 6), 1.5),
    PartKind("Cabling", "Grounding cable 50mm2", "m", 10, (5, 20), (5, 14), 1.0),
    PartKind("Cabling", "Coax feeder 7/8in", "m", 10, (15, 40), (6, 15), 0.8),
    PartKind("Cabling", "Cable tie 300mm UV", "ea", 100, (3, 7), (0.02, 0.1), 2.0),
    PartKind("Cabling", "Cable lug 16mm2", "ea", 10, (3, 10), (0.2, 0.8), 2.0),
    PartKind("Civil", "Ready-mix concrete", "kg", 25, (3, 10), (0.1, 0.3), 2.0),
    PartKind("Civil", "Galvanised bolt M16", "ea", 10, (3, 10), (0.5, 2), 2.0),
    PartKind("Civil", "Steel angle 50x50", "kg", 10, (10, 30), (1.2, 3), 0.8),
    PartKind("Civil", "Fence panel 2.5m", "ea", 1, (10, 30), (60, 180), 0.3),
    PartKind("Civil", "Padlock brass 50mm", "ea", 1, (3, 10), (8, 25), 0.8),
    PartKind("Cooling", "Split AC 24000 BTU", "ea", 1, (20, 45), (900, 2500), 0.2),
    PartKind("Cooling", "AC compressor 24k BTU", "ea", 1, (20, 50), (400, 1200), 0.2),
    PartKind("Cooling", "AC air filter G4", "ea", 1, (3, 10), (5, 20), 2.0),
    PartKind("Cooling", "DC fan module 48V", "ea", 1, (10, 30), (60, 200), 0.6),
    PartKind("Cooling", "Refrigerant R410A", "kg", 1, (5, 15), (10, 30), 1.0),
)

# Yearly demand swing per category as (amplitude, day of year of the peak), for north-east
# Brazil: cooling and batteries fail most in the hot summer, antennas and power suffer in the
# April-June rains, civil works and cable runs happen in the dry second half of the year.
CATEGORY_SEASONS: dict[str, tuple[float, int]] = {
    "Radio": (0.08, 330),
    "Antenna": (0.12, 130),
    "Power": (0.15, 120),
    "Battery": (0.20, 40),
    "Fiber": (0.10, 300),
    "Cabling": (0.10, 250),
    "Civil": (0.20, 260),
    "Cooling": (0.35, 20),
}

SITE_CITIES = ("SAL", "FOR", "REC", "NAT", "JPA", "MCZ", "AJU", "TER", "SLZ", "FEC")
MAX_SITES = 2 * len(SITE_CITIES)

# Every random draw is a uniform in (0, 1) made from a 64-bit hash; hashing the item/day key
# and the seed/stream separately and then once more avoids the correlations that DuckDB's
# built-in multi-argument hash() shows between neighbouring streams.
_RANDOM_MACROS = """
CREATE TEMP MACRO unif(stream, k, t) AS
    ((hash(xor(hash(k::BIGINT * 65536 + t),
               hash(getvariable('seed')::BIGINT * 256 + stream))) >> 11)::DOUBLE + 0.5)
    / 9007199254740992.0;
CREATE TEMP MACRO gauss(stream, k, t) AS
    sqrt(-2 * ln(unif(stream, k, t))) * cos(2 * pi() * unif(stream + 1, k, t));
"""

_CATALOGUE_TABLES = """
CREATE TEMP TABLE part (
    part_no INTEGER, category VARCHAR, part VARCHAR, unit VARCHAR, lot DOUBLE,
    lead_min INTEGER, lead_max INTEGER, cost_min DOUBLE, cost_max DOUBLE, demand_scale DOUBLE);
CREATE TEMP TABLE season (category VARCHAR, amplitude DOUBLE, peak_day INTEGER);
CREATE TEMP TABLE site (site_no INTEGER, site VARCHAR);
"""

# Items draw a part kind and a site; demand parameters are heavy-tailed (log-normal level) so
# most items are slow movers and a few move fast. The `_`-less columns are dim_item's.
_ITEM_TABLE = """
CREATE TEMP TABLE dim_item AS
WITH drawn AS (
    SELECT i AS item_no,
        floor(unif(1, i, 0) * getvariable('part_kinds'))::INTEGER AS part_no,
        floor(unif(2, i, 0) * getvariable('sites'))::INTEGER AS site_no,
        unif(3, i, 0) AS u_lead, unif(4, i, 0) AS u_cost, unif(5, i, 0) AS u_cost_known,
        gauss(6, i, 0) AS z_level, gauss(8, i, 0) AS z_trend, unif(10, i, 0) AS u_weekly,
        gauss(11, i, 0) AS z_model, unif(13, i, 0) AS u_season, unif(14, i, 0) AS u_supply,
        unif(15, i, 0) AS u_phase, unif(16, i, 0) AS u_start, unif(17, i, 0) AS u_shortfall,
        unif(18, i, 0) AS u_retired
    FROM range(1, getvariable('items') + 1) AS r(i)
)
SELECT
    printf('IT-%07d', d.item_no) AS item_id,
    printf('%s #%05d', p.part, d.item_no) AS name,
    p.category,
    s.site,
    p.unit,
    (p.lead_min + floor(d.u_lead * (p.lead_max - p.lead_min + 1)))::INTEGER AS lead_time_days,
    -- some parts have no agreed price yet
    CASE WHEN d.u_cost_known < 0.97
        THEN round(p.cost_min * pow(p.cost_max / p.cost_min, d.u_cost), 2) END AS unit_cost,
    d.item_no::INTEGER AS item_no,
    p.lot,
    p.demand_scale * exp(-1.5 + 1.3 * d.z_level) AS level_lots,
    least(0.5, greatest(-0.4, 0.03 + 0.15 * d.z_trend)) AS trend_per_year,
    0.3 + 0.7 * d.u_weekly AS weekly_amp,
    c.amplitude * (0.6 + 0.8 * d.u_season) AS season_amp,
    c.peak_day AS season_peak,
    -- each item's model is a little off in level, so backtests show a realistic bias
    exp(0.12 * d.z_model - 0.0072) AS model_bias,
    -- superseded parts: the model forecasts no further demand
    d.u_retired < 0.02 AS retired,
    -- parts whose supplier delivers late and short: these run into stock-outs
    d.u_supply < 0.07 AND d.u_retired >= 0.02 AS short_supply,
    d.u_phase, d.u_start, d.u_shortfall
FROM drawn AS d
JOIN part AS p USING (part_no)
JOIN site AS s USING (site_no)
JOIN season AS c USING (category)
"""

# Demand per item and day = level x weekly x yearly x trend (field work stops at weekends).
# Actual demand is intermittent: on each day an issue happens with the probability that a
# Poisson count of lots is non-zero, and its size is log-normal around the expected size.
# The 80% interval is yhat +- 1.2816 sd of that compound distribution, widening with horizon.
_FORECAST_TABLE = """
CREATE TEMP TABLE fact_forecast AS
WITH calendar AS (
    SELECT t::INTEGER AS t,
        getvariable('first_day') + t::INTEGER AS date,
        greatest(0, t - getvariable('history') + 1)::INTEGER AS h
    FROM range(getvariable('days')) AS r(t)
),
expected AS (
    SELECT i.item_no, i.item_id, c.t, c.date, c.h, i.lot, i.model_bias, i.retired,
        i.level_lots * i.lot
        * (1 + i.weekly_amp * CASE isodow(c.date)
            WHEN 1 THEN 0.25 WHEN 2 THEN 0.20 WHEN 3 THEN 0.20 WHEN 4 THEN 0.15
            WHEN 5 THEN 0.10 WHEN 6 THEN -0.35 ELSE -0.55 END)
        * (1 + i.season_amp * cos(2 * pi() * (dayofyear(c.date) - i.season_peak) / 365.25))
        * exp(i.trend_per_year * (c.t - getvariable('history') + 1) / 365.25) AS demand
    FROM dim_item AS i CROSS JOIN calendar AS c
),
modelled AS (
    SELECT *,
        CASE WHEN retired AND h > 0 THEN 0.0 ELSE round(demand * model_bias, 3) END AS yhat,
        1 - exp(-demand / lot) AS p_issue
    FROM expected
),
spread AS (
    SELECT *,
        CASE WHEN yhat > 0
            THEN 1.2816 * yhat * sqrt((1.09 - (1 - exp(-yhat / lot))) / (1 - exp(-yhat / lot)))
                * sqrt(1 + h / 30.0)
            ELSE 0.0 END AS half_width
    FROM modelled
)
SELECT item_no, t, h, item_id, date, yhat,
    greatest(0.0, round(yhat - half_width, 3)) AS yhat_lower,
    round(yhat + half_width, 3) AS yhat_upper,
    CASE WHEN h > 0 THEN NULL
        WHEN unif(21, item_no, t) < p_issue
            THEN lot * greatest(1, round(
                demand / lot / p_issue * exp(0.3 * gauss(22, item_no, t) - 0.045)))
        ELSE 0.0 END AS actual
FROM spread
"""

# Projected stock over the horizon. Healthy items follow the replenishment plan: deliveries
# every `cycle` days top the stock up so that it just reaches the reorder point before the
# next delivery (a sawtooth). Short-supply items carry a backlog of unfilled orders, so their
# sawtooth sits lower and runs dry before deliveries.
# Sums of forecasts run over integer thousandths so the result is exact and order-free.
_INVENTORY_TABLE = """
CREATE TEMP TABLE fact_inventory AS
WITH horizon AS (
    SELECT item_no, item_id, date, h,
        sum(round(yhat * 1000)::BIGINT) OVER (PARTITION BY item_no ORDER BY h) AS cum_milli
    FROM fact_forecast
    WHERE h > 0
),
rate AS (
    SELECT item_no, max(cum_milli) / 1000.0 / getvariable('horizon') AS daily
    FROM horizon GROUP BY item_no
),
policy AS (
    SELECT i.item_no, i.lot, i.short_supply, i.u_start, i.u_shortfall, r.daily,
        r.daily * i.lead_time_days AS lead_demand,
        CASE WHEN r.daily > 0
            THEN r.daily * sqrt((1.09 - (1 - exp(-r.daily / i.lot))) / (1 - exp(-r.daily / i.lot)))
                * sqrt(i.lead_time_days)
            ELSE 0.0 END AS lead_sd,
        CASE WHEN r.daily > 0
            THEN greatest(i.lot, ceil(r.daily * 28 / i.lot) * i.lot) END AS order_qty,
        i.u_phase
    FROM dim_item AS i JOIN rate AS r USING (item_no)
),
plan AS (
    SELECT *,
        round(1.645 * lead_sd, 2) AS safety_stock,
        round(lead_demand + round(1.645 * lead_sd, 2), 2) AS reorder_point,
        greatest(7, round(order_qty / daily))::INTEGER AS cycle
    FROM policy
),
cycles AS (
    SELECT z.item_no, z.item_id, z.date, z.h, z.cum_milli / 1000.0 AS cum_demand,
        p.lot, p.short_supply, p.u_start, p.u_shortfall, p.daily, p.lead_demand, p.lead_sd,
        p.order_qty, p.safety_stock, p.reorder_point, p.cycle,
        floor(p.u_phase * p.cycle)::INTEGER AS phase,
        (z.h + floor(p.u_phase * p.cycle)::INTEGER) // p.cycle AS deliveries
    FROM horizon AS z JOIN plan AS p USING (item_no)
),
planned AS (
    SELECT *,
        reorder_point
            + max(cum_demand) OVER (PARTITION BY item_no, deliveries)
            + daily * greatest(0, (deliveries + 1) * cycle - phase - 1 - getvariable('horizon'))
            - cum_demand AS planned
    FROM cycles
),
projected AS (
    SELECT *,
        round(CASE
            WHEN daily = 0 THEN lot * floor(1 + 20 * u_start)
            WHEN short_supply
                THEN greatest(0.0, planned - (0.6 + 0.8 * u_shortfall) * reorder_point)
            ELSE planned
        END, 2) AS on_hand
    FROM planned
)
SELECT item_no, h, item_id, date, on_hand, reorder_point, safety_stock,
    CASE WHEN daily > 0 THEN round(on_hand / daily, 1) END AS days_of_cover,
    -- P(lead-time demand > on hand) under a normal approximation; the logistic curve
    -- 1 / (1 + exp(1.702 x)) stays within 0.01 of the normal tail
    CASE
        WHEN lead_sd > 0 THEN round(1 / (1 + exp(least(50, greatest(-50,
            1.702 * (on_hand - lead_demand) / lead_sd)))), 4)
        WHEN on_hand >= lead_demand THEN 0.0
        ELSE 1.0
    END AS stockout_risk
FROM projected
"""

# Per-item sums of the accuracy and outlook terms, as exact integers (thousandths and
# billionths of a unit) so that every grouped sum is independent of DuckDB's parallel
# summation order and the KPIs come out identical on every run.
_ITEM_TERMS_TABLE = """
CREATE TEMP TABLE item_terms AS
WITH accuracy AS (
    SELECT item_no,
        sum(actual::BIGINT) AS actual_units,
        sum(round(yhat * 1000)::BIGINT) AS yhat_milli,
        sum(round(abs(actual - yhat) * 1000)::BIGINT) AS abs_error_milli,
        sum(CASE WHEN actual > 0
            THEN round(abs(actual - yhat) / actual * 1e9)::BIGINT END) AS ape_nano,
        count(*) FILTER (WHERE actual > 0) AS demand_days,
        count(*) FILTER (WHERE actual BETWEEN yhat_lower AND yhat_upper) AS covered_days,
        count(*) AS days
    FROM fact_forecast
    WHERE h = 0 AND t >= getvariable('history') - getvariable('backtest')
    GROUP BY item_no
),
demand AS (
    SELECT item_no, sum(round(yhat * 1000)::BIGINT) AS forecast_milli
    FROM fact_forecast WHERE h BETWEEN 1 AND getvariable('outlook') GROUP BY item_no
),
risk AS (
    SELECT item_no, (max(stockout_risk) >= getvariable('at_risk'))::INTEGER AS at_risk
    FROM fact_inventory WHERE h <= getvariable('outlook') GROUP BY item_no
)
SELECT i.category, i.site, i.item_id, a.*, d.forecast_milli, r.at_risk
FROM dim_item AS i
JOIN accuracy AS a USING (item_no)
JOIN demand AS d USING (item_no)
JOIN risk AS r USING (item_no)
"""

# KPIs at four grains; a null dimension means "all". Ratios that are undefined (no demand in
# the backtest window) are left out rather than reported as zero.
_METRICS_TABLE = """
CREATE TEMP TABLE fact_metrics AS
WITH grouped AS (
    SELECT
        CASE grouping(category, site, item_id)
            WHEN 7 THEN 'global' WHEN 3 THEN 'category' WHEN 5 THEN 'site' ELSE 'item'
        END AS scope,
        category, site, item_id,
        sum(ape_nano) / nullif(sum(demand_days), 0) / 1e9 AS mape,
        sum(abs_error_milli) / 1000.0 / nullif(sum(actual_units), 0) AS wape,
        (sum(yhat_milli) / 1000.0 - sum(actual_units)) / nullif(sum(actual_units), 0) AS bias,
        sum(covered_days) / sum(days) AS coverage,
        sum(forecast_milli) / 1000.0 AS forecast_units,
        sum(at_risk)::DOUBLE AS stockout_items
    FROM item_terms
    GROUP BY GROUPING SETS ((), (category), (site), (category, site, item_id))
)
SELECT scope, category, site, item_id, metric, round(value, 6) AS value,
    CASE WHEN metric IN ('forecast_units', 'stockout_items')
        THEN 'next_' || getvariable('outlook') || 'd'
        ELSE 'backtest_' || getvariable('backtest') || 'd'
    END AS period
FROM (
    UNPIVOT grouped
    ON mape, wape, bias, coverage, forecast_units, stockout_items
    INTO NAME metric VALUE value
)
WHERE value IS NOT NULL
"""


def generate_demo(
    out_dir: Path, spec: DemoSpec, progress: Progress | None = None
) -> dict[str, int]:
    """Write the demo tables as Parquet files into `out_dir`; return the rows of each table."""
    import duckdb

    report = progress or _ignore
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        spill_dir = Path(tempfile.mkdtemp(prefix=".demo-spill-", dir=out_dir))
    except OSError as exc:
        msg = f"{out_dir}: cannot write there ({exc.strerror})"
        raise ConfigError(msg) from exc
    registry = load_registry()
    rows: dict[str, int] = {}
    written: dict[str, Path] = {}
    try:
        con = _connect(spill_dir)
        try:
            _set_spec(con, spec)
            report(f"drawing {spec.items:,} items x {spec.days:,} days (seed {spec.seed})")
            _build_tables(con)
            for name in DEMO_TABLES:
                rows[name], written[name] = _write_table(con, registry.table(name), out_dir)
                report(f"{name}: {rows[name]:,} rows")
        finally:
            con.close()
        # All tables or none: a failed run must not leave new tables beside older ones.
        for name, temp_path in written.items():
            temp_path.replace(out_dir / f"{name}{TABLE_SUFFIX}")
        fsync_path(out_dir)
    except duckdb.Error as exc:
        fault = node_fault(exc, f"writing the demo tables to {out_dir}")
        if fault is None:
            raise
        raise fault from exc
    finally:
        for temp_path in written.values():
            temp_path.unlink(missing_ok=True)
        shutil.rmtree(spill_dir, ignore_errors=True)
    return rows


def site_codes(count: int) -> list[str]:
    """The first `count` site codes, alternating cities so that small demos span several."""
    codes = [f"{city}-{number:02d}" for number in (1, 2) for city in SITE_CITIES]
    return codes[:count]


def site_count(items: int) -> int:
    """How many sites a demo of `items` items spreads them over (about sqrt(items), 2..20)."""
    return max(2, min(MAX_SITES, math.isqrt(items)))


def _ignore(message: str) -> None:
    """Progress sink used when the caller does not want progress."""


def _connect(spill_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB bounded in memory, spilling to `spill_dir`."""
    import duckdb

    con = duckdb.connect(
        config={
            "memory_limit": DUCKDB_MEMORY_LIMIT,
            "temp_directory": str(spill_dir),
            # Row order must survive into COPY so every file is sorted by its sort key.
            "preserve_insertion_order": True,
        }
    )
    # DuckDB draws a progress bar on the terminal for long queries; the library never prints.
    con.execute("SET enable_progress_bar = false")
    con.execute(_RANDOM_MACROS)
    return con


def _set_spec(con: duckdb.DuckDBPyConnection, spec: DemoSpec) -> None:
    """Hand the spec and the catalogue to DuckDB as variables and small tables."""
    variables: dict[str, object] = {
        "seed": spec.seed,
        "items": spec.items,
        "days": spec.days,
        "history": spec.history_days,
        "horizon": spec.horizon_days,
        "backtest": spec.backtest_days,
        "outlook": spec.outlook_days,
        "at_risk": AT_RISK_THRESHOLD,
        "part_kinds": len(PART_KINDS),
        "sites": site_count(spec.items),
        "model_version": spec.model_version,
        "source": spec.source,
        "dataset_id": spec.dataset_id,
    }
    for name, value in variables.items():
        con.execute(f"SET VARIABLE {name} = ?", [value])
    con.execute("SET VARIABLE first_day = ?::DATE", [spec.first_day.isoformat()])
    con.execute(
        "SET VARIABLE generated_at = ?::TIMESTAMPTZ",
        [spec.generated_at.astimezone(UTC).isoformat()],
    )
    con.execute(_CATALOGUE_TABLES)
    con.executemany(
        "INSERT INTO part VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (n, k.category, k.part, k.unit, k.lot, *k.lead_days, *k.unit_cost, k.demand_scale)
            for n, k in enumerate(PART_KINDS)
        ],
    )
    con.executemany(
        "INSERT INTO season VALUES (?, ?, ?)",
        [(category, amp, peak) for category, (amp, peak) in CATEGORY_SEASONS.items()],
    )
    con.executemany(
        "INSERT INTO site VALUES (?, ?)",
        list(enumerate(site_codes(site_count(spec.items)))),
    )


def _build_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Compute every table in DuckDB, each from the ones before it."""
    for statement in (
        _ITEM_TABLE,
        _FORECAST_TABLE,
        _INVENTORY_TABLE,
        _ITEM_TERMS_TABLE,
        _METRICS_TABLE,
    ):
        con.execute(statement)


def _write_table(
    con: duckdb.DuckDBPyConnection, table: TableSchema, out_dir: Path
) -> tuple[int, Path]:
    """Write `table` in registry column order and sort order to a hidden temporary file.

    Returns its rows and the file, flushed, for the caller to rename into place.
    """
    types = {c.name: c.duckdb_type for c in table.columns}
    data = [f'CAST("{c.name}" AS {c.duckdb_type}) AS "{c.name}"' for c in table.data_columns]
    metadata = [f"CAST(getvariable('{n}') AS {types[n]}) AS \"{n}\"" for n in METADATA_COLUMNS]
    order = ", ".join(f'"{name}"' for name in table.sort_key)
    # Sorting in a subquery keeps the constant metadata columns out of the sort's payload;
    # DuckDB keeps the subquery's order through the projection. Identifiers come from the
    # registry, never from input.
    query = (
        f'SELECT {", ".join(data + metadata)} FROM (SELECT * FROM "{table.name}" ORDER BY {order})'
    )
    fd, temp_name = tempfile.mkstemp(prefix=f".{table.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    temp_path = Path(temp_name)
    try:
        target = str(temp_path).replace("'", "''")
        written = con.execute(
            f"COPY ({query}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        fsync_path(temp_path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return (int(written[0]) if written else 0), temp_path
