"""Tests of ml_workstation.demo: registry-exact, deterministic, realistic demo tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from appliance.errors import ConfigError, NodeFault
from appliance.packs.pack_layout import METADATA_COLUMNS
from appliance.packs.parquet_footer import read_footer
from appliance.packs.schema_registry import load_registry, schema_problems
from appliance.packs.table_checks import foreign_key_problems, table_problems
from ml_workstation import demo
from ml_workstation.demo import DEMO_TABLES, DemoSpec, generate_demo

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = DemoSpec(items=60, days=60)
ML_LIBRARIES = (
    "torch",
    "tensorflow",
    "sklearn",
    "prophet",
    "statsmodels",
    "xgboost",
    "lightgbm",
    "keras",
    "pmdarima",
    "mlflow",
)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The small demo generated once for the module, with its reported row counts."""
    out_dir = tmp_path_factory.mktemp("demo")
    return out_dir, generate_demo(out_dir, SMALL)


@pytest.fixture(scope="module")
def tables(small_demo: tuple[Path, dict[str, int]]) -> dict[str, pa.Table]:
    """Every table of the small demo, read back with pyarrow."""
    out_dir, _ = small_demo
    return {name: pq.read_table(out_dir / f"{name}.parquet") for name in DEMO_TABLES}


def _query(
    sql: str, params: dict[str, object] | None = None, **files: Path
) -> list[tuple[Any, ...]]:
    """Run `sql` with named `params`, each keyword bound as a view over that Parquet file."""
    con = duckdb.connect()
    for name, path in files.items():
        con.read_parquet(str(path)).create_view(name)
    return con.execute(sql, params or {}).fetchall()


def test_writes_exactly_the_four_tables_and_reports_their_rows(small_demo, tables):
    out_dir, rows = small_demo
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{t}.parquet" for t in DEMO_TABLES)
    assert rows == {name: table.num_rows for name, table in tables.items()}
    assert rows["dim_item"] == SMALL.items
    assert rows["fact_forecast"] == SMALL.items * SMALL.days
    assert rows["fact_inventory"] == SMALL.items * SMALL.horizon_days


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_file_schema_matches_registry(small_demo, name):
    out_dir, _ = small_demo
    table = load_registry().table(name)
    assert schema_problems(table, read_footer(out_dir / f"{name}.parquet").columns) == []


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_files_are_zstd_compressed(small_demo, name):
    out_dir, _ = small_demo
    metadata = pq.ParquetFile(out_dir / f"{name}.parquet").metadata
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"ZSTD"}


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_metadata_columns_hold_the_spec_in_every_row(tables, name):
    expected = {
        "model_version": SMALL.model_version,
        "generated_at": SMALL.generated_at,
        "source": SMALL.source,
        "dataset_id": SMALL.dataset_id,
    }
    for column in METADATA_COLUMNS:
        assert tables[name].column(column).unique().to_pylist() == [expected[column]]


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_non_nullable_columns_have_no_nulls(tables, name):
    for column in load_registry().table(name).columns:
        if not column.nullable:
            assert tables[name].column(column.name).null_count == 0, column.name


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_rows_are_sorted_by_sort_key(tables, name):
    sort_key = load_registry().table(name).sort_key
    order = pc.sort_indices(tables[name], sort_keys=[(k, "ascending") for k in sort_key])
    assert order.to_pylist() == list(range(tables[name].num_rows))


@pytest.mark.parametrize("name", DEMO_TABLES)
def test_primary_key_is_unique(tables, name):
    primary_key = list(load_registry().table(name).primary_key)
    assert tables[name].group_by(primary_key).aggregate([]).num_rows == tables[name].num_rows


@pytest.mark.parametrize("name", ["fact_forecast", "fact_inventory", "fact_metrics"])
def test_every_item_id_exists_in_dim_item(tables, name):
    known = set(tables["dim_item"].column("item_id").to_pylist())
    used = set(tables[name].column("item_id").drop_null().to_pylist())
    assert used
    assert used <= known


def test_same_spec_gives_byte_identical_files(small_demo, tmp_path):
    out_dir, _ = small_demo
    generate_demo(tmp_path, SMALL)
    for name in DEMO_TABLES:
        file = f"{name}.parquet"
        assert (tmp_path / file).read_bytes() == (out_dir / file).read_bytes(), name


def test_different_seed_gives_different_data(tables, tmp_path):
    generate_demo(tmp_path, DemoSpec(items=SMALL.items, days=SMALL.days, seed=SMALL.seed + 1))
    other = pq.read_table(tmp_path / "fact_forecast.parquet")
    for column in ("yhat", "actual"):
        assert other.column(column) != tables["fact_forecast"].column(column)


def test_generation_overwrites_existing_tables(small_demo, tmp_path):
    (tmp_path / "dim_item.parquet").write_bytes(b"stale")
    generate_demo(tmp_path, SMALL)
    out_dir, _ = small_demo
    assert (tmp_path / "dim_item.parquet").read_bytes() == (
        out_dir / "dim_item.parquet"
    ).read_bytes()


def test_failed_write_leaves_previous_table_and_no_temp_file(tmp_path, monkeypatch):
    (tmp_path / "dim_item.parquet").write_bytes(b"previous")

    def fail(path: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(demo, "fsync_path", fail)
    with pytest.raises(OSError, match="disk full"):
        generate_demo(tmp_path, SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["dim_item.parquet"]
    assert (tmp_path / "dim_item.parquet").read_bytes() == b"previous"


def test_progress_names_every_table_with_its_rows(tmp_path):
    messages: list[str] = []
    rows = generate_demo(tmp_path, SMALL, progress=messages.append)
    for name, count in rows.items():
        assert f"{name}: {count:,} rows" in messages


def test_dim_item_spans_several_categories_sites_and_units(tables):
    items = tables["dim_item"]
    assert len(items.column("category").unique()) >= 5
    assert len(items.column("site").unique()) >= 3
    assert {"ea", "m"} <= set(items.column("unit").unique().to_pylist())
    lead_times = items.column("lead_time_days")
    assert pc.min(lead_times).as_py() >= 3
    assert pc.max(lead_times).as_py() <= 60
    assert pc.min(items.column("unit_cost")).as_py() > 0


def test_actuals_are_intermittent_non_negative_counts(tables):
    actual = tables["fact_forecast"].column("actual").drop_null()
    values = actual.to_pylist()
    assert min(values) == 0
    assert all(v == int(v) for v in values)
    zero_share = values.count(0) / len(values)
    assert 0.3 < zero_share < 0.95


def test_interval_contains_the_forecast(tables):
    forecast = tables["fact_forecast"]
    lower, yhat, upper = (forecast.column(c) for c in ("yhat_lower", "yhat", "yhat_upper"))
    assert pc.all(pc.less_equal(lower, yhat)).as_py()
    assert pc.all(pc.less_equal(yhat, upper)).as_py()
    assert pc.min(lower).as_py() >= 0
    assert pc.any(pc.less(lower, upper)).as_py()


def test_actual_is_null_exactly_on_horizon_days(small_demo):
    out_dir, _ = small_demo
    last_observed = SMALL.generated_at.date()
    [(history_nulls, horizon_values, first, last, horizon_days)] = _query(
        """
        SELECT
            count(*) FILTER (WHERE date <= $last AND actual IS NULL),
            count(*) FILTER (WHERE date > $last AND actual IS NOT NULL),
            min(date), max(date),
            count(DISTINCT date) FILTER (WHERE date > $last)
        FROM forecast
        """,
        {"last": last_observed},
        forecast=out_dir / "fact_forecast.parquet",
    )
    assert (history_nulls, horizon_values) == (0, 0)
    assert SMALL.horizon_days == 15
    assert horizon_days == SMALL.horizon_days
    assert first == last_observed - timedelta(days=SMALL.history_days - 1)
    assert last == last_observed + timedelta(days=SMALL.horizon_days)


def test_inventory_covers_only_horizon_days(tables):
    last_observed = SMALL.generated_at.date()
    dates = set(tables["fact_inventory"].column("date").to_pylist())
    assert dates == {last_observed + timedelta(days=d) for d in range(1, SMALL.horizon_days + 1)}


def test_inventory_policy_is_consistent_and_some_items_are_at_risk(small_demo):
    out_dir, _ = small_demo
    [(bad_rows, at_risk, items, sawtooth_items)] = _query(
        """
        WITH per_item AS (
            SELECT item_id, max(stockout_risk) AS risk,
                count(*) FILTER (WHERE on_hand > lag_on_hand) AS refills
            FROM (SELECT *, lag(on_hand) OVER (PARTITION BY item_id ORDER BY date) AS lag_on_hand
                  FROM inventory)
            GROUP BY item_id
        )
        SELECT
            (SELECT count(*) FROM inventory
             WHERE stockout_risk NOT BETWEEN 0 AND 1 OR on_hand < 0
                OR safety_stock < 0 OR reorder_point < safety_stock),
            count(*) FILTER (WHERE risk >= 0.5),
            count(*),
            count(*) FILTER (WHERE refills > 0)
        FROM per_item
        """,
        inventory=out_dir / "fact_inventory.parquet",
    )
    assert bad_rows == 0
    assert 0 < at_risk < items / 4
    assert sawtooth_items > 0


def test_metrics_cover_all_scopes_with_dimensions_that_match(small_demo):
    out_dir, _ = small_demo
    rows = _query(
        """
        SELECT scope, count(*),
            count(category), count(site), count(item_id),
            list(DISTINCT metric ORDER BY metric), list(DISTINCT period ORDER BY period)
        FROM metrics GROUP BY scope
        """,
        metrics=out_dir / "fact_metrics.parquet",
    )
    by_scope = {scope: rest for scope, *rest in rows}
    assert set(by_scope) == {"global", "category", "site", "item"}
    for _, _, _, _, metrics, periods in by_scope.values():
        assert metrics == ["bias", "coverage", "forecast_units", "mape", "stockout_items", "wape"]
        assert periods == [f"backtest_{SMALL.backtest_days}d", f"next_{SMALL.outlook_days}d"]
    # (rows, rows with category, with site, with item_id): null means "all"
    global_rows, category_rows, site_rows, item_rows = (
        by_scope[s][0] for s in ("global", "category", "site", "item")
    )
    assert by_scope["global"][:4] == [global_rows, 0, 0, 0]
    assert by_scope["category"][:4] == [category_rows, category_rows, 0, 0]
    assert by_scope["site"][:4] == [site_rows, 0, site_rows, 0]
    assert by_scope["item"][:4] == [item_rows] * 4


def test_metrics_agree_with_the_tables_they_summarise(small_demo):
    out_dir, _ = small_demo
    [(stockout_items, items_at_risk, coverage)] = _query(
        """
        SELECT
            (SELECT value FROM metrics WHERE scope = 'global' AND metric = 'stockout_items'),
            (SELECT count(DISTINCT item_id) FROM inventory
             WHERE stockout_risk >= 0.5 AND date <= $last + $outlook),
            (SELECT value FROM metrics WHERE scope = 'global' AND metric = 'coverage')
        """,
        {"last": SMALL.generated_at.date(), "outlook": SMALL.outlook_days},
        metrics=out_dir / "fact_metrics.parquet",
        inventory=out_dir / "fact_inventory.parquet",
    )
    assert stockout_items == items_at_risk
    assert 0.5 < coverage <= 1


def test_no_ml_library_is_imported(tmp_path):
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ml_workstation.demo import DemoSpec, generate_demo\n"
        f"generate_demo(Path({str(tmp_path)!r}), DemoSpec(items=5, days=28))\n"
        f"print(json.dumps(sorted(m for m in {ML_LIBRARIES!r} if m in sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert (tmp_path / "fact_forecast.parquet").exists()


@pytest.mark.parametrize(
    "bad",
    [
        {"items": 0},
        {"items": 1_000_001},
        {"days": 3},
        {"days": 3661},
        {"seed": -1},
        {"generated_at": datetime(2026, 11, 1, 6, 0)},  # naive: no time zone
        {"dataset_id": " "},
    ],
    ids=lambda bad: next(iter(bad)),
)
def test_bad_spec_is_refused(bad):
    with pytest.raises(ConfigError):
        DemoSpec(**bad)


def test_shortest_history_still_generates(tmp_path):
    rows = generate_demo(tmp_path, DemoSpec(items=3, days=14))
    assert rows["fact_forecast"] == 3 * 14
    assert rows["fact_inventory"] == 3 * 3


def test_every_table_passes_the_registry_data_checks(tmp_path):
    spec = DemoSpec()  # what `mlws demo` writes by default
    generate_demo(tmp_path, spec)
    registry = load_registry()
    con = duckdb.connect()
    relations = {name: f"read_parquet('{tmp_path / f'{name}.parquet'}')" for name in DEMO_TABLES}
    metadata = {
        "model_version": spec.model_version,
        "generated_at": spec.generated_at,
        "source": spec.source,
        "dataset_id": spec.dataset_id,
    }
    for name, relation in relations.items():
        assert table_problems(con, registry.table(name), relation, metadata) == ([], [])
    assert foreign_key_problems(con, registry, relations) == []


def test_the_longest_demo_values_fit_the_registry_caps():
    caps = {c.name: c.max_length or 0 for c in load_registry().table("dim_item").data_columns}
    longest_name = max(len(kind.part) for kind in demo.PART_KINDS) + len(f" #{demo.MAX_ITEMS}")
    assert longest_name <= caps["name"]
    assert max(len(kind.category) for kind in demo.PART_KINDS) <= caps["category"]
    assert max(len(kind.unit) for kind in demo.PART_KINDS) <= caps["unit"]
    assert max(len(site) for site in demo.site_codes(demo.MAX_SITES)) <= caps["site"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 KB tmpfs, unmounted afterwards; skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_fault_and_leaves_the_previous_tables(tiny_disk):
    previous = tiny_disk / "dim_item.parquet"
    previous.write_bytes(b"previous")
    with pytest.raises(NodeFault, match="No space left on device") as fault:
        generate_demo(tiny_disk, DemoSpec(items=2000, days=400))
    assert fault.value.reason == "disk-full"
    assert "\n" not in str(fault.value)
    assert [p.name for p in tiny_disk.iterdir()] == ["dim_item.parquet"]
    assert previous.read_bytes() == b"previous"


def test_an_output_folder_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        generate_demo(tmp_path / "a_file" / "tables", SMALL)
