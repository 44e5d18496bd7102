"""Forecast revisions over HTTP (issue 17, part 2): the real server on stores of real imports.

Every number the API gives is checked against a DuckDB query of the two versions' databases,
written here on its own (`expected_pair`): the horizons from each version's generated_at and last
forecast day, their overlap, each item's forecast sum over it, first day below the reorder point
and highest stock-out risk, and the sums per category and site.

The packs are demo packs with different seeds (so every forecast moved), different item sets
(24, 30 and 36 items: new and dropped items) and different date ranges (40 and 60 days, made on
different days: horizons that differ and overlap in part):

    a: seed 7, 30 items, 40 days, generated 2026-11-01T06:00Z    (good_pack)
    b: seed 8, 30 items, 40 days, generated 2026-11-02           (newer_pack)
    c: seed 10, 36 items, 40 days, generated 2026-11-03
    d: seed 9, 24 items, 60 days, generated 2026-11-04
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec
import pytest

from ml_workstation.demo import DemoSpec, generate_demo
from server.schemas import ErrorBody, ItemRevision, ItemRevisionSeries, Revisions, Timeseries
from tests.conftest import Signer, import_into, make_pack, run
from tests.integration.live_server import LiveServer, live_server, wait_until_served
from tests.integration.test_server_api import parse_metrics, requests_total
from tests.integration.test_server_edge import raw_request
from tests.packs import flip_byte

SORT_KEYS = {
    "change": "forecast_change",
    "change_pct": "forecast_change_pct",
    "risk": "max_stockout_risk_change",
}
ROUNDED = 0.0005 + 1e-9  # a value rounded to 3 decimals, against the unrounded one


# --- the packs and the stores --------------------------------------------------------------------


def demo_pack(folder: Path, signer: Signer, spec: DemoSpec) -> Path:
    generate_demo(folder / "tables", spec)
    return make_pack(folder / "tables", signer, folder / "demo.pack")


@pytest.fixture(scope="module")
def packs(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, newer_pack: Path, signer: Signer
) -> dict[str, Path]:
    made = tmp_path_factory.mktemp("revision-packs")
    c = DemoSpec(items=36, days=40, seed=10, generated_at=datetime(2026, 11, 3, tzinfo=UTC))
    d = DemoSpec(items=24, days=60, seed=9, generated_at=datetime(2026, 11, 4, tzinfo=UTC))
    return {
        "a": good_pack,
        "b": newer_pack,
        "c": demo_pack(made / "c", signer, c),
        "d": demo_pack(made / "d", signer, d),
    }


def store_of(tmp_path_factory: pytest.TempPathFactory, signer: Signer, *packs: Path) -> Path:
    data_dir = tmp_path_factory.mktemp("revision-store") / "data"
    for pack in packs:
        import_into(data_dir, pack, signer)
    return data_dir


def database(data_dir: Path, vid: str) -> Path:
    return data_dir / "versions" / vid / "data.duckdb"


@pytest.fixture(scope="module")
def pair_server(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> Iterator[LiveServer]:
    """v0001 = a, v0002 = b (current): two seeds, the same items, horizons a day apart."""
    data_dir = store_of(tmp_path_factory, signer, packs["a"], packs["b"])
    with live_server(data_dir, signer.allowed_signers) as started:
        yield started


@pytest.fixture(scope="module")
def unchecked_import(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> tuple[Path, str]:
    """a then b, with a's check stamp gone before b's import: (store, b's import progress)."""
    data_dir = store_of(tmp_path_factory, signer, packs["a"])
    (data_dir / "checked" / "v0001.json").unlink()
    imported = import_into(data_dir, packs["b"], signer)
    return data_dir, imported.stderr


@pytest.fixture(scope="module")
def unchecked_server(unchecked_import: tuple[Path, str], signer: Signer) -> Iterator[LiveServer]:
    with live_server(unchecked_import[0], signer.allowed_signers, workers=1) as started:
        yield started


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> Iterator[LiveServer]:
    """v0001..v0004 = a, b, c, d; v0004 (24 items, 60 days) is current."""
    data_dir = store_of(tmp_path_factory, signer, *packs.values())
    with live_server(data_dir, signer.allowed_signers) as started:
        yield started


@pytest.fixture(scope="module")
def rolled_back_server(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> Iterator[LiveServer]:
    """a, b, c, d imported, then rolled back to v0003 (36 items): the one before is v0002."""
    data_dir = store_of(tmp_path_factory, signer, *packs.values())
    run("appliance", "rollback", "v0003", "--data-dir", data_dir, check=True)
    with live_server(data_dir, signer.allowed_signers, workers=1) as started:
        yield started


@pytest.fixture(scope="module")
def first_server(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> Iterator[LiveServer]:
    """Only v0001."""
    data_dir = store_of(tmp_path_factory, signer, packs["a"])
    with live_server(data_dir, signer.allowed_signers, workers=1) as started:
        yield started


@pytest.fixture(scope="module")
def broken_server(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> Iterator[LiveServer]:
    """a, b, c, d imported (v0004 current); then v0003's import report garbled, v0002's folder
    removed and a byte of v0001's answers flipped."""
    data_dir = store_of(tmp_path_factory, signer, *packs.values())
    report = data_dir / "versions" / "v0003" / "import.json"
    report.chmod(0o644)
    report.write_text("{not json")
    removed = data_dir / "versions" / "v0002"
    removed.chmod(0o755)
    shutil.rmtree(removed)
    flip_byte(data_dir / "versions" / "v0001" / "answers.bin", 100)
    with live_server(data_dir, signer.allowed_signers, workers=1) as started:
        yield started


# --- the independent computation -----------------------------------------------------------------


@dataclass
class Expected:
    """What the API must say of one comparison, from a query of the two databases."""

    current_horizon: tuple[date, date]
    against_horizon: tuple[date, date]
    window: tuple[date, date] | None
    items: dict[str, dict[str, Any]]


def expected_pair(current: Path, against: Path) -> Expected:
    """The comparison of two version databases, computed here, without the node's code."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{current}' AS cur (READ_ONLY)")
    con.execute(f"ATTACH '{against}' AS ag (READ_ONLY)")

    def horizon(db: str) -> tuple[date, date]:
        generated = con.execute(
            f"SELECT value FROM {db}.appliance_version WHERE key = 'generated_at'"
        ).fetchone()[0]  # type: ignore[index]
        assert generated.endswith("Z")
        last = con.execute(f"SELECT max(date) FROM {db}.fact_forecast").fetchone()[0]  # type: ignore[index]
        return date.fromisoformat(generated[:10]) + timedelta(days=1), last

    mine, theirs = horizon("cur"), horizon("ag")
    start, end = max(mine[0], theirs[0]), min(mine[1], theirs[1])
    window = (start, end) if start <= end else None
    per_item = """
        SELECT d.item_id, d.name, d.category, d.site, d.unit,
            (SELECT count(*) FROM {db}.fact_forecast f
                WHERE f.item_id = d.item_id AND f.date BETWEEN $s AND $e) AS days,
            (SELECT sum(yhat) FROM {db}.fact_forecast f
                WHERE f.item_id = d.item_id AND f.date BETWEEN $s AND $e) AS total,
            (SELECT min(date) FROM {db}.fact_inventory i
                WHERE i.item_id = d.item_id AND i.on_hand < i.reorder_point) AS below,
            (SELECT max(stockout_risk) FROM {db}.fact_inventory i
                WHERE i.item_id = d.item_id) AS risk
        FROM {db}.dim_item d
    """
    bounds = {"s": window[0] if window else None, "e": window[1] if window else None}
    names = ("item_id", "name", "category", "site", "unit", "days", "total", "below", "risk")
    sides = []
    for db in ("cur", "ag"):
        rows = con.execute(per_item.format(db=db), bounds).fetchall()
        sides.append({row[0]: dict(zip(names, row, strict=True)) for row in rows})
    con.close()
    items = {}
    for item_id in sorted(sides[0].keys() | sides[1].keys()):
        c, a = sides[0].get(item_id), sides[1].get(item_id)
        status = "compared" if c and a else "new" if c else "dropped"
        items[item_id] = {"status": status, "current": c, "against": a, "shown": c or a}
    return Expected(mine, theirs, window, items)


# --- helpers -------------------------------------------------------------------------------------


def revisions(server: LiveServer, **params: object) -> Revisions:
    answer = server.get("/api/v1/revisions", params=params)
    assert answer.status_code == 200, answer.text
    return msgspec.json.decode(answer.content, type=Revisions)


def every_item(server: LiveServer, **params: object) -> list[ItemRevision]:
    """Every item of a comparison, page by page (7 a page), following next_offset."""
    items: list[ItemRevision] = []
    offset: int | None = 0
    while offset is not None:
        page = revisions(server, offset=offset, limit=7, **params)
        assert page.total >= len(items) + len(page.items)
        items += page.items
        offset = page.next_offset
        assert offset is None or offset == len(items)
    return items


def error_of(answer: httpx.Response, status: int) -> tuple[str, str | None]:
    assert answer.status_code == status, answer.text
    detail = msgspec.json.decode(answer.content, type=ErrorBody).error
    assert "\n" not in detail.message
    return detail.message, detail.reason


def close(value: float | None, exact: float | None, within: float = ROUNDED) -> bool:
    if value is None or exact is None:
        return value is None and exact is None
    return abs(value - exact) <= within


def check_item(item: ItemRevision, want: dict[str, Any]) -> None:
    """One item of the API against the independent computation."""
    c, a, shown = want["current"], want["against"], want["shown"]
    assert item.status == want["status"], item
    assert (item.name, item.category, item.site, item.unit) == (
        shown["name"], shown["category"], shown["site"], shown["unit"],
    )  # fmt: skip
    assert item.days_current == (c["days"] if c else 0)
    assert item.days_against == (a["days"] if a else 0)
    assert close(item.forecast_total_current, c["total"] if c else None)
    assert close(item.forecast_total_against, a["total"] if a else None)
    both = c is not None and a is not None and c["total"] is not None and a["total"] is not None
    assert close(item.forecast_change, c["total"] - a["total"] if both else None)
    if both and a["total"] != 0:
        pct = 100 * (c["total"] - a["total"]) / a["total"]
        assert close(item.forecast_change_pct, pct, 0.005 + 1e-9), item
    else:
        assert item.forecast_change_pct is None
    below_c = c["below"].isoformat() if c and c["below"] else None
    below_a = a["below"].isoformat() if a and a["below"] else None
    assert item.first_below_reorder_point_current == below_c
    assert item.first_below_reorder_point_against == below_a
    days = (c["below"] - a["below"]).days if below_c and below_a else None
    assert item.first_below_reorder_point_change_days == days
    assert item.max_stockout_risk_current == (c["risk"] if c else None)
    assert item.max_stockout_risk_against == (a["risk"] if a else None)
    risks = c is not None and a is not None and c["risk"] is not None and a["risk"] is not None
    assert close(
        item.max_stockout_risk_change, c["risk"] - a["risk"] if risks else None, 5e-5 + 1e-9
    )


def group_totals(want: Expected, key: str | None, value: str | None) -> dict[str, Any]:
    """The totals of the items of one group (key = category or site, or None: all)."""
    rows = [w for w in want.items.values() if key is None or w["shown"][key] == value]
    compared = [w for w in rows if w["status"] == "compared"]
    with_totals = [
        w
        for w in compared
        if w["current"]["total"] is not None and w["against"]["total"] is not None
    ]
    current = sum(round(w["current"]["total"], 3) for w in with_totals)
    against = sum(round(w["against"]["total"], 3) for w in with_totals)
    new = [w for w in rows if w["status"] == "new"]
    dropped = [w for w in rows if w["status"] == "dropped"]
    mine = [w["current"] for w in rows if w["current"]]
    theirs = [w["against"] for w in rows if w["against"]]
    return {
        "items_compared": len(compared),
        "items_new": len(new),
        "items_dropped": len(dropped),
        "forecast_total_current": current if with_totals else None,
        "forecast_total_against": against if with_totals else None,
        "forecast_total_new_items": sum(round(w["current"]["total"], 3) for w in new) if new and want.window else None,
        "forecast_total_dropped_items": sum(round(w["against"]["total"], 3) for w in dropped) if dropped and want.window else None,
        "items_at_risk_current": sum(1 for s in mine if s["risk"] is not None and s["risk"] >= 0.5),
        "items_at_risk_against": sum(1 for s in theirs if s["risk"] is not None and s["risk"] >= 0.5),
        "items_below_reorder_point_current": sum(1 for s in mine if s["below"] is not None),
        "items_below_reorder_point_against": sum(1 for s in theirs if s["below"] is not None),
    }  # fmt: skip


def check_totals(totals: Any, want: dict[str, Any]) -> None:
    for name, value in want.items():
        got = getattr(totals, name)
        if isinstance(value, float) or name.startswith("forecast_total"):
            assert close(got, value, 1e-6), (name, got, value)
        else:
            assert got == value, (name, got, value)
    if want["forecast_total_current"] is None:
        assert totals.forecast_change is None
        return
    change = want["forecast_total_current"] - want["forecast_total_against"]
    assert close(totals.forecast_change, change, 1e-6 + ROUNDED)


def check_comparison(body: Revisions, items: list[ItemRevision], want: Expected) -> None:
    """Horizons, window, every item, the totals and every category and site, as computed here."""
    assert body.against is not None
    assert (body.current.horizon_start, body.current.horizon_end) == tuple(
        d.isoformat() for d in want.current_horizon
    )
    assert (body.against.horizon_start, body.against.horizon_end) == tuple(
        d.isoformat() for d in want.against_horizon
    )
    if want.window is None:
        assert body.window is None
    else:
        assert body.window is not None
        assert (body.window.start, body.window.end) == tuple(d.isoformat() for d in want.window)
        assert body.window.days == (want.window[1] - want.window[0]).days + 1
        assert body.window.rule == "overlap"
    assert sorted(item.item_id for item in items) == sorted(want.items)
    for item in items:
        check_item(item, want.items[item.item_id])
    assert body.current.items == sum(1 for w in want.items.values() if w["current"])
    assert body.against.items == sum(1 for w in want.items.values() if w["against"])
    assert body.totals is not None
    check_totals(body.totals, group_totals(want, None, None))
    categories = sorted({w["shown"]["category"] for w in want.items.values()})
    assert [group.category for group in body.by_category] == categories
    for group in body.by_category:
        check_totals(group, group_totals(want, "category", group.category))
    sites = sorted({w["shown"]["site"] for w in want.items.values()})
    assert [group.site for group in body.by_site] == sites
    for site in body.by_site:
        check_totals(site, group_totals(want, "site", site.site))


# --- two seeds: the default comparison, precomputed at import ------------------------------------


def test_two_seeds_compared_with_the_one_before_match_a_direct_duckdb_computation(
    pair_server: LiveServer,
) -> None:
    body = revisions(pair_server)
    assert body.current.version == "v0002"
    assert body.against is not None and body.against.version == "v0001"
    assert body.precomputed
    want = expected_pair(
        database(pair_server.data_dir, "v0002"), database(pair_server.data_dir, "v0001")
    )
    assert want.window is not None and want.current_horizon != want.against_horizon
    items = every_item(pair_server)
    check_comparison(body, items, want)
    assert body.totals is not None
    assert body.totals.items_changed == sum(
        1 for item in items
        if item.forecast_change or item.max_stockout_risk_change
        or item.first_below_reorder_point_current != item.first_below_reorder_point_against
    )  # fmt: skip
    assert body.note is not None and "horizons differ" in body.note and "9 day(s)" in body.note
    assert "item sets" not in body.note


def test_naming_the_one_before_gives_the_same_answer_as_the_default(
    pair_server: LiveServer,
) -> None:
    named = pair_server.get("/api/v1/revisions", params={"against": "v0001"})
    default = pair_server.get("/api/v1/revisions")
    assert named.content == default.content


def test_an_import_whose_previous_version_is_not_known_good_leaves_it_to_the_server(
    unchecked_import: tuple[Path, str], unchecked_server: LiveServer, pair_server: LiveServer
) -> None:
    _data_dir, progress = unchecked_import
    assert "revisions against v0001 not precomputed" in progress
    on_demand = revisions(unchecked_server)
    assert not on_demand.precomputed
    precomputed = revisions(pair_server)
    assert msgspec.structs.replace(on_demand, precomputed=True) == precomputed
    assert every_item(unchecked_server) == every_item(pair_server)
    for params in ({"sort": "risk"}, {"status": "compared", "sort": "change_pct", "limit": 3}):
        assert msgspec.structs.replace(
            revisions(unchecked_server, **params), precomputed=True
        ) == revisions(pair_server, **params)


# --- other item sets and date ranges, on demand --------------------------------------------------


@pytest.mark.parametrize("against", ["v0003", "v0002", "v0001"])
def test_every_other_version_compares_as_a_direct_duckdb_computation(
    server: LiveServer, against: str
) -> None:
    body = revisions(server, against=against)
    assert body.precomputed == (against == "v0003")
    want = expected_pair(database(server.data_dir, "v0004"), database(server.data_dir, against))
    check_comparison(body, every_item(server, against=against), want)


def test_items_only_in_the_version_compared_with_are_dropped_not_zero_changes(
    server: LiveServer,
) -> None:
    body = revisions(server, against="v0002", status="dropped", sort="item_id")
    assert [item.item_id for item in body.items] == [f"IT-{n:07d}" for n in range(25, 31)]
    for item in body.items:
        assert item.status == "dropped"
        assert item.forecast_total_current is None and item.forecast_change is None
        assert item.days_current == 0 and item.days_against > 0
        assert item.max_stockout_risk_current is None and item.max_stockout_risk_change is None
    assert body.totals is not None
    assert (body.totals.items_dropped, body.totals.items_new, body.totals.items_compared) == (
        6,
        0,
        24,
    )
    assert body.note is not None
    assert "6 only in v0002 (dropped)" in body.note
    compared = revisions(server, against="v0002", status="compared", limit=500)
    assert {item.status for item in compared.items} == {"compared"}
    assert compared.total == 24


def test_items_only_in_the_current_version_are_new(rolled_back_server: LiveServer) -> None:
    body = revisions(rolled_back_server, status="new", sort="item_id")
    assert body.current.version == "v0003" and body.against is not None
    assert body.against.version == "v0002"  # the one before, not the newest
    assert body.precomputed
    assert [item.item_id for item in body.items] == [f"IT-{n:07d}" for n in range(31, 37)]
    for item in body.items:
        assert item.forecast_total_against is None and item.forecast_change is None
        assert item.forecast_total_current is not None and item.days_against == 0
    assert body.note is not None and "6 item(s) only in v0003 (new), 0 only in v0002" in body.note
    want = expected_pair(
        database(rolled_back_server.data_dir, "v0003"),
        database(rolled_back_server.data_dir, "v0002"),
    )
    check_comparison(body, every_item(rolled_back_server), want)


def test_a_later_version_may_be_named_and_the_change_is_still_current_minus_it(
    rolled_back_server: LiveServer,
) -> None:
    body = revisions(rolled_back_server, against="v0004")
    assert not body.precomputed
    want = expected_pair(
        database(rolled_back_server.data_dir, "v0003"),
        database(rolled_back_server.data_dir, "v0004"),
    )
    check_comparison(body, every_item(rolled_back_server, against="v0004"), want)
    assert body.totals is not None and body.totals.items_new == 12


def test_horizons_of_different_lengths_are_compared_over_their_overlap(server: LiveServer) -> None:
    body = revisions(server, against="v0002")
    # d: 60 days generated 2026-11-04 (horizon 15 days), b: 40 days generated 2026-11-02 (10 days)
    assert (body.current.horizon_start, body.current.horizon_end) == ("2026-11-05", "2026-11-19")
    assert body.against is not None
    assert (body.against.horizon_start, body.against.horizon_end) == ("2026-11-03", "2026-11-12")
    assert body.window is not None
    assert (body.window.start, body.window.end, body.window.days) == ("2026-11-05", "2026-11-12", 8)
    assert body.note is not None and "compared over the 8 day(s) both cover" in body.note
    assert all(
        item.days_current == item.days_against == 8
        for item in every_item(server, against="v0002", status="compared")
    )


# --- listing: sort, pages, filters ---------------------------------------------------------------


@pytest.mark.parametrize("sort", ["change", "change_pct", "risk", "item_id"])
def test_items_come_in_the_order_asked_for_largest_movement_first(
    server: LiveServer, sort: str
) -> None:
    items = every_item(server, against="v0002", sort=sort)
    assert len(items) == 30
    if sort == "item_id":
        assert [i.item_id for i in items] == sorted(i.item_id for i in items)
        return

    def key(item: ItemRevision) -> tuple[int, float, str]:
        value = getattr(item, SORT_KEYS[sort])
        return (1, 0.0, item.item_id) if value is None else (0, -abs(value), item.item_id)

    assert items == sorted(items, key=key)
    assert getattr(items[-1], SORT_KEYS[sort]) is None  # the dropped items, last


def test_filters_narrow_the_totals_and_the_items_but_not_the_breakdowns(server: LiveServer) -> None:
    whole = revisions(server, against="v0002", limit=500)
    category = whole.by_category[0].category
    site = whole.by_site[-1].site
    for params, group in (
        ({"category": category}, whole.by_category[0]),
        ({"site": site}, whole.by_site[-1]),
    ):
        narrowed = revisions(server, against="v0002", limit=500, **params)
        assert narrowed.by_category == whole.by_category and narrowed.by_site == whole.by_site
        assert narrowed.totals is not None
        shared = msgspec.structs.asdict(narrowed.totals)
        assert shared == {k: v for k, v in msgspec.structs.asdict(group).items() if k in shared}
        key = next(iter(params))
        assert narrowed.items and all(getattr(i, key) == params[key] for i in narrowed.items)
        assert narrowed.total == len(narrowed.items)
    both = revisions(server, against="v0002", category=category, site="no-such-site")
    assert both.items == [] and both.total == 0
    assert both.totals is not None and both.totals.items_compared == 0
    assert both.totals.forecast_total_current is None


def test_a_page_past_the_end_is_empty(server: LiveServer) -> None:
    body = revisions(server, against="v0003", offset=1000)
    assert body.items == [] and body.next_offset is None and body.total == 36


# --- one item: the second line of its chart -----------------------------------------------------


def item_revision(server: LiveServer, item_id: str, **params: object) -> ItemRevisionSeries:
    answer = server.get(f"/api/v1/items/{item_id}/revision", params=params)
    assert answer.status_code == 200, answer.text
    return msgspec.json.decode(answer.content, type=ItemRevisionSeries)


def forecast_rows(db: Path, item_id: str) -> dict[str, tuple[float, float, float]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT date, yhat, yhat_lower, yhat_upper FROM fact_forecast WHERE item_id = ?",
            [item_id],
        ).fetchall()
    finally:
        con.close()
    return {day.isoformat(): (yhat, lower, upper) for day, yhat, lower, upper in rows}


@pytest.mark.parametrize("against", ["v0003", "v0001"])
def test_an_items_revision_carries_the_other_forecast_on_the_current_days(
    server: LiveServer, against: str
) -> None:
    item_id = "IT-0000003"
    body = item_revision(server, item_id, against=against)
    timeseries = msgspec.json.decode(
        server.get(f"/api/v1/items/{item_id}/timeseries").content, type=Timeseries
    )
    assert body.dates == timeseries.dates
    assert body.yhat == timeseries.yhat
    theirs = forecast_rows(database(server.data_dir, against), item_id)
    assert body.against_yhat == [theirs[d][0] if d in theirs else None for d in body.dates]
    assert body.against_yhat_lower == [theirs[d][1] if d in theirs else None for d in body.dates]
    assert body.against_yhat_upper == [theirs[d][2] if d in theirs else None for d in body.dates]
    assert body.against_days_outside == len(theirs.keys() - set(body.dates))
    assert None in body.against_yhat  # d (60 days) starts earlier and ends later than a or c
    if against == "v0001":
        assert body.against_days_outside == 0
    listed = [i for i in every_item(server, against=against) if i.item_id == item_id]
    assert body.revision == listed[0]
    assert body.against is not None and body.against.version == against


def test_a_dropped_items_revision_draws_only_the_other_version(server: LiveServer) -> None:
    body = item_revision(server, "IT-0000030", against="v0003")
    assert body.revision is not None and body.revision.status == "dropped"
    theirs = forecast_rows(database(server.data_dir, "v0003"), "IT-0000030")
    assert body.dates == sorted(theirs)
    assert body.yhat == [None] * len(body.dates)
    assert body.against_yhat == [theirs[d][0] for d in body.dates]
    assert body.against_days_outside == 0
    assert server.get("/api/v1/items/IT-0000030/timeseries").status_code == 404


def test_a_new_items_revision_has_no_other_line(rolled_back_server: LiveServer) -> None:
    body = item_revision(rolled_back_server, "IT-0000036")
    assert body.revision is not None and body.revision.status == "new"
    assert body.yhat and None not in body.yhat
    assert body.against_yhat == [None] * len(body.dates)
    assert body.against_days_outside == 0


def test_an_item_in_neither_version_is_not_found(server: LiveServer) -> None:
    message, _reason = error_of(server.get("/api/v1/items/IT-0009999/revision"), 404)
    assert "IT-0009999" in message and "v0004" in message and "v0003" in message


# --- nothing to compare with ---------------------------------------------------------------------


def test_the_first_version_has_nothing_to_compare_with_and_says_so(
    first_server: LiveServer,
) -> None:
    body = revisions(first_server)
    assert body.against is None and body.totals is None and body.window is None
    assert body.items == [] and body.total == 0 and body.next_offset is None
    assert (
        body.note
        == "v0001 is the first version on this node: there is nothing to compare it with yet"
    )
    assert body.current.version == "v0001" and body.current.items == 30
    assert (body.current.horizon_start, body.current.horizon_end) == ("2026-11-02", "2026-11-11")
    item = item_revision(first_server, "IT-0000001")
    assert item.against is None and item.revision is None and item.note == body.note
    assert item.dates and item.against_yhat == [None] * len(item.dates)
    error_of(first_server.get("/api/v1/items/IT-0009999/revision"), 404)


def test_the_first_version_s_note_names_the_newest_later_version_as_versions_come(
    tmp_path_factory: pytest.TempPathFactory, packs: dict[str, Path], signer: Signer
) -> None:
    """Rolled back to v0001, its answer suggests the newest version; after another import and
    the same rollback, the newer one (the answer of before is cached, and must not be given)."""
    data_dir = store_of(tmp_path_factory, signer, packs["a"], packs["b"])
    run("appliance", "rollback", "v0001", "--data-dir", data_dir, check=True)
    with live_server(data_dir, signer.allowed_signers, workers=1) as live:
        first = revisions(live)
        assert first.against is None and first.note is not None
        assert first.note.endswith("e.g. against=v0002"), first.note
        import_into(data_dir, packs["c"], signer)  # v0003, served
        run("appliance", "rollback", "v0001", "--data-dir", data_dir, check=True)
        wait_until_served(live, "v0001")
        again = revisions(live)
        assert again.note is not None and again.note.endswith("e.g. against=v0003"), again.note


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "against", ["1", "v1", "v00001x", "V0001", "v0001 ", "v0000000001", "%00", "v-001"]
)
@pytest.mark.parametrize("path", ["/api/v1/revisions", "/api/v1/items/IT-0000001/revision"])
def test_an_against_not_spelled_as_a_version_is_a_bad_request(
    server: LiveServer, path: str, against: str
) -> None:
    message, _reason = error_of(server.get(path, params={"against": against}), 400)
    assert "'against'" in message


@pytest.mark.parametrize(
    "params",
    [{"status": "moved"}, {"sort": "abs"}, {"offset": "-1"}, {"limit": "0"}, {"limit": "501"}],
)
def test_other_bad_parameters_are_bad_requests(server: LiveServer, params: dict[str, str]) -> None:
    message, _reason = error_of(server.get("/api/v1/revisions", params=params), 400)
    assert repr(next(iter(params))) in message


@pytest.mark.parametrize("path", ["/api/v1/revisions", "/api/v1/items/IT-0000001/revision"])
def test_comparing_the_current_version_with_itself_is_refused(
    server: LiveServer, path: str
) -> None:
    message, reason = error_of(server.get(path, params={"against": "v0004"}), 400)
    assert reason == "same-version" and "v0004" in message


@pytest.mark.parametrize("path", ["/api/v1/revisions", "/api/v1/items/IT-0000001/revision"])
def test_a_version_that_never_existed_is_not_found(server: LiveServer, path: str) -> None:
    message, reason = error_of(server.get(path, params={"against": "v0042"}), 404)
    assert reason == "no-such-version" and "v0042" in message


@pytest.mark.parametrize("path", ["/api/v1/revisions", "/api/v1/items/IT-0000001/revision"])
def test_a_version_removed_from_the_store_is_not_found_and_says_so(
    broken_server: LiveServer, path: str
) -> None:
    message, reason = error_of(broken_server.get(path, params={"against": "v0002"}), 404)
    assert reason == "version-removed" and "v0002" in message
    assert "/" not in message.replace("v0002", "")  # no path of the node


def test_a_damaged_version_is_never_compared_with(broken_server: LiveServer) -> None:
    # v0003's report does not read and v0002 is gone, so the one before v0004 is v0001, whose
    # files fail their SHA256SUMS.
    for params in ({}, {"against": "v0001"}):
        message, reason = error_of(broken_server.get("/api/v1/revisions", params=params), 503)
        assert reason == "against-damaged" and "v0001" in message
    item = broken_server.get("/api/v1/items/IT-0000001/revision", params={"against": "v0001"})
    assert error_of(item, 503)[1] == "against-damaged"
    assert broken_server.get("/api/v1/items/IT-0000001/timeseries").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/revisions", "/api/v1/items/IT-0000001/revision"])
def test_a_version_whose_report_does_not_read_is_a_fault_of_the_node(
    broken_server: LiveServer, path: str
) -> None:
    message, reason = error_of(broken_server.get(path, params={"against": "v0003"}), 503)
    assert reason == "against-unreadable" and "v0003" in message
    assert "/tmp" not in message  # no path of the node


# --- HTTP: ETags, HEAD, logs ---------------------------------------------------------------------


def test_answers_revalidate_with_their_etag_which_names_the_version_compared_with(
    server: LiveServer,
) -> None:
    first = server.get("/api/v1/revisions", params={"against": "v0002"})
    etag = first.headers["etag"]
    assert first.headers["x-data-version"] == "v0004"
    assert etag.endswith('-v0002"')
    again = server.get(
        "/api/v1/revisions", params={"against": "v0002"}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    other = server.get(
        "/api/v1/revisions", params={"against": "v0001"}, headers={"If-None-Match": etag}
    )
    assert other.status_code == 200
    with server.client() as client:
        head = client.head("/api/v1/items/IT-0000001/revision")
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"]


def test_every_worker_gives_the_same_answer(server: LiveServer) -> None:
    answers = {
        server.get("/api/v1/revisions", params={"against": "v0001", "limit": 3}).content
        for _ in range(8)
    }
    assert len(answers) == 1


def test_every_spelling_of_the_path_is_one_route_counted_in_the_metrics(
    unchecked_server: LiveServer,
) -> None:
    plain = unchecked_server.get("/api/v1/revisions?limit=2")
    for spelling in ("//api/v1/revisions", "/api/v1/./revisions/", "/api/v1/items/../revisions"):
        answer = raw_request(unchecked_server, "GET", f"{spelling}?limit=2")
        assert answer.status == 200, spelling
        assert answer.body == plain.content
    unchecked_server.get("/api/v1/items/IT-0000001/revision")
    time.sleep(1.5)  # workers write their metrics snapshots every second
    samples = parse_metrics(unchecked_server.get("/metrics").text)
    assert requests_total(samples, route="/api/v1/revisions", method="GET", status="200") >= 4
    item_route = "/api/v1/items/{item_id}/revision"
    assert requests_total(samples, route=item_route, method="GET", status="200") >= 1
    computed = [
        value
        for name, _labels, value in samples
        if name == "appliance_revision_pairs_computed_total"
    ]
    assert computed == [1.0]  # one worker, one pair (v0002 against v0001), computed once
