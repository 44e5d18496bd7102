"""Forecast revisions (appliance/data/revisions.py): horizons, the window, the rows and totals of a
pair on hand-made versions whose every number is worked out here, and which version is the one
before (on a real store)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from appliance.data import version_build
from appliance.data.importer import import_pack, rollback
from appliance.data.revisions import (
    ITEM_REVISION_SQL,
    ITEM_REVISION_TABLE,
    PAIR_TABLE,
    TOTALS_SQL,
    PairInfo,
    RevisionBase,
    Span,
    build_pair,
    compare_versions,
    comparison_base,
    horizon_of,
    overlap,
)
from appliance.data.store import DataStore
from appliance.errors import UnknownVersion
from server.revision_bodies import nothing_before_note, pair_note
from tests.conftest import Signer

D = date(2026, 11, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def version(
    items: dict[str, tuple[str, str]],
    forecast: dict[str, list[tuple[int, float]]],
    inventory: dict[str, list[tuple[int, float, float, float]]],
) -> duckdb.DuckDBPyConnection:
    """An in-memory version: items {id: (category, site)}, forecast {id: [(day, yhat)]},
    inventory {id: [(day, on_hand, reorder_point, risk)]}."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE dim_item (item_id VARCHAR, name VARCHAR, category VARCHAR, site VARCHAR, unit VARCHAR)"
    )
    con.execute("CREATE TABLE fact_forecast (item_id VARCHAR, date DATE, yhat DOUBLE)")
    con.execute(
        "CREATE TABLE fact_inventory (item_id VARCHAR, date DATE, on_hand DOUBLE, "
        "reorder_point DOUBLE, stockout_risk DOUBLE)"
    )
    for item_id, (category, site) in items.items():
        con.execute(
            "INSERT INTO dim_item VALUES (?, ?, ?, ?, 'ea')",
            [item_id, f"{item_id} name", category, site],
        )
    for item_id, days in forecast.items():
        for n, yhat in days:
            con.execute("INSERT INTO fact_forecast VALUES (?, ?, ?)", [item_id, day(n), yhat])
    for item_id, rows in inventory.items():
        for n, on_hand, reorder, risk in rows:
            con.execute(
                "INSERT INTO fact_inventory VALUES (?, ?, ?, ?, ?)",
                [item_id, day(n), on_hand, reorder, risk],
            )
    return con


def flat(values: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(values.items())


# The against version: generated on D (horizon D+1..D+5), the current one on D+2 (D+3..D+7):
# the window is D+3..D+5. Items:
#   A in both, crossing in both (against D+2, current D+4), risk 0.2 -> 0.7
#   B only in the current version (new)
#   C only in the against version (dropped)
#   D in both, the against forecast 0 in the window, crossing only in the against one
#   E in both, no inventory rows in either
AGAINST = {
    "items": {
        "A": ("Radio", "S1"),
        "C": ("Power", "S2"),
        "D": ("Radio", "S2"),
        "E": ("Power", "S1"),
    },
    "forecast": {
        "A": flat(dict.fromkeys(range(-2, 6), 1.0)),
        "C": flat(dict.fromkeys(range(6), 2.0)),
        "D": flat(dict.fromkeys(range(6), 0.0)),
        "E": flat(dict.fromkeys(range(6), 0.5)),
    },
    "inventory": {
        "A": [(1, 9.0, 5.0, 0.1), (2, 4.0, 5.0, 0.2), (3, 6.0, 5.0, 0.0)],
        "C": [(1, 1.0, 5.0, 0.9)],
        "D": [(1, 1.0, 5.0, 0.6), (2, 9.0, 5.0, 0.0)],
    },
}
CURRENT = {
    # A and D moved site and category: the current version's count
    "items": {
        "A": ("Radio", "S1"),
        "B": ("Fiber", "S1"),
        "D": ("Fiber", "S1"),
        "E": ("Power", "S1"),
    },
    "forecast": {
        "A": flat(dict.fromkeys(range(1, 8), 1.5)),
        "B": flat(dict.fromkeys(range(3, 8), 3.0)),
        "D": flat(dict.fromkeys(range(3, 8), 0.25)),
        "E": flat(dict.fromkeys(range(3, 8), 0.5)),
    },
    "inventory": {
        "A": [(3, 9.0, 5.0, 0.3), (4, 4.0, 5.0, 0.7)],
        "B": [(3, 2.0, 1.0, 0.05)],
        "D": [(3, 9.0, 5.0, 0.1)],
    },
}


@pytest.fixture
def pair() -> duckdb.DuckDBPyConnection:
    current = version(**CURRENT)  # type: ignore[arg-type]
    against = version(**AGAINST)  # type: ignore[arg-type]
    mine, theirs, window, facts_c, facts_a = compare_versions(
        current, "2026-11-03T00:00:00Z", against, "2026-11-01T06:00:00Z"
    )
    assert (mine, theirs, window) == (
        Span(day(3), day(7)),
        Span(day(1), day(5)),
        Span(day(3), day(5)),
    )
    target = duckdb.connect()
    assert build_pair(target, "p", facts_c, facts_a) == 5
    return target


def rows_of(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cursor = con.execute(ITEM_REVISION_SQL.format(table="p"))
    names = [column[0] for column in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_each_item_is_compared_over_the_window_with_its_own_inventory(
    pair: duckdb.DuckDBPyConnection,
) -> None:
    rows = rows_of(pair)
    a = rows["A"]
    assert (a["status"], a["days_current"], a["days_against"]) == ("compared", 3, 3)
    assert (a["forecast_total_current"], a["forecast_total_against"]) == (4.5, 3.0)
    assert (a["forecast_change"], a["forecast_change_pct"]) == (1.5, 50.0)
    assert a["first_below_reorder_point_current"] == "2026-11-05"
    assert a["first_below_reorder_point_against"] == "2026-11-03"
    assert a["first_below_reorder_point_change_days"] == 2
    assert (a["max_stockout_risk_current"], a["max_stockout_risk_against"]) == (0.7, 0.2)
    assert a["max_stockout_risk_change"] == 0.5


def test_items_in_one_version_only_are_new_or_dropped_with_no_change(
    pair: duckdb.DuckDBPyConnection,
) -> None:
    rows = rows_of(pair)
    b, c = rows["B"], rows["C"]
    assert (b["status"], b["category"], b["days_against"]) == ("new", "Fiber", 0)
    assert (b["forecast_total_current"], b["forecast_total_against"], b["forecast_change"]) == (
        9.0,
        None,
        None,
    )
    assert (
        b["max_stockout_risk_change"] is None and b["first_below_reorder_point_change_days"] is None
    )
    assert (c["status"], c["category"], c["site"], c["days_current"]) == (
        "dropped",
        "Power",
        "S2",
        0,
    )
    assert (c["forecast_total_current"], c["forecast_total_against"], c["forecast_change"]) == (
        None,
        6.0,
        None,
    )
    assert c["first_below_reorder_point_against"] == "2026-11-02"


def test_a_crossing_in_one_version_only_and_a_zero_total_give_nulls_not_numbers(
    pair: duckdb.DuckDBPyConnection,
) -> None:
    d, e = rows_of(pair)["D"], rows_of(pair)["E"]
    assert (d["forecast_total_against"], d["forecast_change"], d["forecast_change_pct"]) == (
        0.0,
        0.75,
        None,
    )
    assert d["first_below_reorder_point_current"] is None
    assert d["first_below_reorder_point_against"] == "2026-11-02"
    assert d["first_below_reorder_point_change_days"] is None
    assert (d["category"], d["site"]) == ("Fiber", "S1")  # the current version's
    assert (e["forecast_change"], e["forecast_change_pct"]) == (0.0, 0.0)
    assert (
        e["max_stockout_risk_current"],
        e["max_stockout_risk_against"],
        e["max_stockout_risk_change"],
    ) == (None, None, None)


def totals(con: duckdb.DuckDBPyConnection, key: str | None) -> list[tuple[Any, ...]]:
    rows = ITEM_REVISION_SQL.format(table="p")
    group = f"GROUP BY {key}" if key else ""
    return con.execute(TOTALS_SQL.format(key=key or "NULL", rows=rows, group=group)).fetchall()


def test_totals_count_new_and_dropped_apart_and_sum_the_compared_items(
    pair: duckdb.DuckDBPyConnection,
) -> None:
    (row,) = totals(pair, None)
    assert row == (
        None,
        3, 1, 1,  # compared A D E, new B, dropped C
        2,  # changed: A and D (E's total, days, crossing and risk are the same)
        4.5 + 0.75 + 1.5, 3.0 + 0.0 + 1.5, 1.5 + 0.75, round(100 * 2.25 / 4.5, 2),
        9.0, 6.0,  # the new and the dropped items' totals
        1, 2,  # at risk (>= 0.5): A now; C and D before
        1, 3,  # below the reorder point: A now; A, C and D before
    )  # fmt: skip


def test_totals_per_category_follow_the_current_versions_categories(
    pair: duckdb.DuckDBPyConnection,
) -> None:
    by_category = {row[0]: row for row in totals(pair, "category")}
    assert sorted(by_category) == ["Fiber", "Power", "Radio"]
    assert by_category["Fiber"][1:4] == (1, 1, 0)  # D compared, B new
    assert by_category["Power"][1:4] == (1, 0, 1)  # E compared, C dropped
    assert by_category["Radio"][1:4] == (1, 0, 0)  # A only: D moved to Fiber
    assert by_category["Power"][9:11] == (None, 6.0)  # no new item, C dropped


def test_horizons_that_do_not_overlap_compare_no_forecast() -> None:
    current = version(**CURRENT)  # type: ignore[arg-type]
    against = version(**AGAINST)  # type: ignore[arg-type]
    *_spans, facts_c, facts_a = compare_versions(
        current, "2026-11-06T00:00:00Z", against, "2026-11-01T06:00:00Z"
    )
    assert _spans[2] is None
    target = duckdb.connect()
    build_pair(target, "p", facts_c, facts_a)
    rows = rows_of(target)
    assert all(row["forecast_change"] is None and row["days_current"] == 0 for row in rows.values())
    assert rows["A"]["first_below_reorder_point_change_days"] == 2  # inventory is still compared
    (row,) = totals(target, None)
    assert row[4] == 2 and row[5:11] == (None,) * 6  # A and D changed, no totals at all


def test_the_horizon_starts_the_day_after_generated_at_in_utc() -> None:
    con = version({"A": ("c", "s")}, {"A": flat(dict.fromkeys(range(10), 1.0))}, {})
    assert horizon_of(con, "2026-11-01T23:30:00-03:00") == Span(day(2), day(9))  # 02:30Z on D+1
    assert horizon_of(con, "2026-11-10T06:00:00Z") is None  # nothing after it
    assert overlap(Span(day(1), day(3)), None) is None
    assert overlap(Span(day(1), day(3)), Span(day(3), day(9))) == Span(day(3), day(3))
    assert Span(day(3), day(3)).days == 1


def test_the_note_says_what_differs_and_nothing_when_nothing_does() -> None:
    same = PairInfo(
        "v0002", "v0001", Span(day(1), day(5)), Span(day(1), day(5)), Span(day(1), day(5))
    )
    assert pair_note(same, 0, 0) is None
    moved = PairInfo(
        "v0002", "v0001", Span(day(2), day(6)), Span(day(1), day(5)), Span(day(2), day(5))
    )
    assert pair_note(moved, 2, 1) == (
        "The item sets differ: 2 item(s) only in v0002 (new), 1 only in v0001 (dropped); "
        "the horizons differ (v0002: 2026-11-03 to 2026-11-07, v0001: 2026-11-02 to 2026-11-06): "
        "forecasts are compared over the 4 day(s) both cover, 2026-11-03 to 2026-11-06"
    )
    apart = PairInfo("v0002", "v0001", Span(day(7), day(9)), None, None)
    assert pair_note(apart, 0, 0) == (
        "The horizons do not overlap (v0002: 2026-11-08 to 2026-11-10, v0001: no horizon): "
        "forecast totals are not compared"
    )


# --- which version is the one before, on a real store -------------------------------------------


@pytest.fixture
def store(tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer) -> DataStore:
    store = DataStore(tmp_path / "data")
    for pack in (good_pack, newer_pack):
        import_pack(store, pack, signer.trusted())
    return store


def test_the_one_before_is_the_highest_version_below_the_current_one(store: DataStore) -> None:
    base = comparison_base(store, "v0002", None)
    assert base is not None and base.vid == "v0001"
    assert comparison_base(store, "v0001", None) is None
    rollback(store, "v0001")
    assert comparison_base(store, "v0001", None) is None
    assert nothing_before_note(store, "v0001") == (
        "There is no version before v0001 to compare it with; name a later one, e.g. against=v0002"
    )
    later = comparison_base(store, "v0001", "v0002")
    assert later is not None and later.vid == "v0002"


def test_a_version_never_imported_and_one_removed_are_told_apart(store: DataStore) -> None:
    with pytest.raises(UnknownVersion) as never:
        comparison_base(store, "v0002", "v0007")
    assert never.value.reason == "no-such-version"
    folder = store.versions_dir / "v0001"
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with pytest.raises(UnknownVersion) as removed:
        comparison_base(store, "v0002", "v0001")
    assert removed.value.reason == "version-removed"
    assert comparison_base(store, "v0002", None) is None  # nothing before v0002 any more


def test_the_import_precomputed_the_pair_against_the_one_before(store: DataStore) -> None:
    con = duckdb.connect(str(store.versions_dir / "v0002" / "data.duckdb"), read_only=True)
    try:
        assert con.execute(f"SELECT current, against FROM {PAIR_TABLE}").fetchall() == [
            ("v0002", "v0001")
        ]
        assert con.execute(f"SELECT count(*) FROM {ITEM_REVISION_TABLE}").fetchone() == (30,)
    finally:
        con.close()
    first = duckdb.connect(str(store.versions_dir / "v0001" / "data.duckdb"), read_only=True)
    try:
        tables = {row[0] for row in first.execute("SHOW TABLES").fetchall()}
    finally:
        first.close()
    assert PAIR_TABLE not in tables and ITEM_REVISION_TABLE not in tables


def test_a_previous_version_that_cannot_be_read_is_left_to_the_server(tmp_path: Path) -> None:
    garbage = tmp_path / "data.duckdb"
    garbage.write_bytes(b"not a database" * 100)
    con = version(**CURRENT)  # type: ignore[arg-type]
    lines: list[str] = []
    base = RevisionBase("v0001", garbage, "2026-11-01T06:00:00Z")
    meta = {"generated_at": "2026-11-03T00:00:00Z"}
    version_build._precompute_revisions(con, "v0002", meta, base, lines.append)
    assert len(lines) == 1 and lines[0].startswith("revisions against v0001 not precomputed (")
    assert lines[0].endswith("; served on demand")
    tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert PAIR_TABLE not in tables and ITEM_REVISION_TABLE not in tables
