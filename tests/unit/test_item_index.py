"""The in-memory item search gives the SQL's answers, byte for byte, on awkward items.

`server.bodies.list_items_query` (DuckDB over item_overview) is the reference: every page of
every combination of q, filters, sort, cursor and limit must come out the same from
`server.item_index.ItemIndex`, including names that DuckDB's ILIKE and Python's lower() fold
differently (final sigma, U+0130), LIKE wildcards in q, ties and nulls in each sorted value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import duckdb
import msgspec
import pytest

from appliance.data.answers import OVERVIEW_TABLE
from server.bodies import items_page, list_items_query
from server.item_index import OVERVIEW_COLUMNS, SORTS, ItemIndex, fold
from server.schemas import ItemsPage

ALPHABET = list("aAbBzZ09-_.%\\ ") + list("ÉéßẞİıIiΣσςΩωǅǆǄﬁKkKÅåÆæØøĲĳ")  # noqa: RUF001
NAMES = ["Éclair radio", "straße Fiber", "İstanbul power", "ΣΊΣΥΦΟΣ", "100% copper_wire", "a\\b"]


@dataclass
class OverviewOnly:
    """What list_items_query and items_page read of a version: a test double of VersionHandle."""

    con: duckdb.DuckDBPyConnection
    items: ItemIndex | None
    vid: str = "v0001"
    meta: dict[str, Any] = field(
        default_factory=lambda: {
            "dataset_id": "d",
            "model_version": "m",
            "source": "s",
            "generated_at": "2026-11-01T06:00:00Z",
        }
    )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con


def overview(rows: list[tuple[Any, ...]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE {OVERVIEW_TABLE} (item_id VARCHAR, name VARCHAR, category VARCHAR, "
        "site VARCHAR, unit VARCHAR, max_stockout_risk DOUBLE, days_of_cover_now DOUBLE, "
        "forecast_next_30d DOUBLE)"
    )
    con.executemany(f"INSERT INTO {OVERVIEW_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def generated_rows(count: int, seed: int) -> list[tuple[Any, ...]]:
    chooser = random.Random(seed)
    rows = []
    for number in range(count):
        name = (
            chooser.choice(NAMES)
            if number % 3 == 0
            else "".join(chooser.choice(ALPHABET) for _ in range(chooser.randint(1, 12)))
        )
        risk = chooser.choice([None, 0.0, 0.25, 0.5, 0.5, 1.0, chooser.random()])
        rows.append(
            (
                f"IT-{chooser.randint(0, 10 * count):07d}-{number}",
                name,
                chooser.choice(["Radio", "Power", "Fiber"]),
                chooser.choice(["north", "south"]),
                "pcs",
                risk,
                chooser.choice([None, 0.0, 3.5, 3.5, 10.0, round(chooser.random() * 30, 2)]),
                chooser.choice([0.0, 12.5, 12.5, round(chooser.random() * 100, 3)]),
            )
        )
    return rows


def both(
    rows: list[tuple[Any, ...]], con: duckdb.DuckDBPyConnection, grams: bool = True
) -> tuple[OverviewOnly, OverviewOnly]:
    """The SQL's handle and the index's; without grams, `q` scans the text (before they are built)."""
    loaded = con.execute(f"SELECT {OVERVIEW_COLUMNS} FROM {OVERVIEW_TABLE}").fetchall()
    index = ItemIndex.from_rows(loaded)
    if not grams:
        index._grams = None  # as it is while the worker's thread builds them
    return OverviewOnly(con, None), OverviewOnly(con, index)


def walk(handle: OverviewOnly, **query: Any) -> list[bytes]:
    """Every page of a query, following the cursors."""
    pages, cursor = [], None
    while True:
        if handle.items is None:
            body = list_items_query(handle, cursor=cursor, **query)  # type: ignore[arg-type]
        else:
            body = items_page(handle, cursor=cursor, **query)  # type: ignore[arg-type]
        pages.append(body)
        cursor = msgspec.json.decode(body, type=ItemsPage).next
        if cursor is None or len(pages) > 200:
            return pages


QUERIES = [
    {},
    {"q": "it-0"},
    {"q": "É"},
    {"q": "ς"},
    {"q": "i"},
    {"q": "%"},
    {"q": "_"},
    {"q": "\\"},
    {"q": "ss"},
    {"q": "no such text"},
    {"category": "Radio"},
    {"site": "south"},
    {"category": "Power", "site": "north"},
    {"q": "a", "category": "Fiber"},
    {"category": "Unknown"},
]


@pytest.mark.parametrize("grams", [True, False], ids=["grams", "scan"])
@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("limit", [3, 500])
@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_every_page_is_the_sqls(query: dict[str, str], sort: str, limit: int, grams: bool) -> None:
    rows = generated_rows(80, seed=11)
    con = overview(rows)
    by_sql, from_memory = both(rows, con, grams)
    arguments = {"q": None, "category": None, "site": None, **query, "sort": sort, "limit": limit}
    assert walk(from_memory, **arguments) == walk(by_sql, **arguments)


@pytest.mark.parametrize("grams", [True, False], ids=["grams", "scan"])
def test_random_substrings_fold_as_duckdb_ilike(grams: bool) -> None:
    chooser = random.Random(5)
    rows = generated_rows(300, seed=3)
    con = overview(rows)
    by_sql, from_memory = both(rows, con, grams)
    for _ in range(150):
        q = "".join(chooser.choice(ALPHABET) for _ in range(chooser.randint(1, 5)))
        arguments = {"q": q, "category": None, "site": None, "sort": "item_id", "limit": 500}
        assert walk(from_memory, **arguments) == walk(by_sql, **arguments), q


def test_fold_lowercases_one_character_at_a_time() -> None:
    assert fold("ΣΊΣΥΦΟΣ") == "σίσυφοσ"  # no final sigma, as DuckDB
    assert fold("İ") == "i"
    assert fold("ABC-def") == "abc-def"


def test_a_query_with_the_separator_finds_nothing() -> None:
    rows = generated_rows(20, seed=1)
    index = ItemIndex.from_rows(rows)
    assert index.page("\x00", None, None, "item_id", None, 50).total == 0


def test_the_grams_are_built_in_the_background_and_then_used() -> None:
    rows = generated_rows(200, seed=2)
    index = ItemIndex.from_rows(rows, background=True)
    assert index.wait_for_grams(timeout=30)
    wanted = rows[17][0]
    page = index.page(wanted.lower(), None, None, "item_id", None, 50)
    assert [item.item_id for item in page.items] == [wanted]


@pytest.mark.parametrize("sort", ["risk", "cover", "units"])
def test_many_matches_take_the_whole_value_order_filtered(
    monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    monkeypatch.setattr("server.item_index.SORT_AT_MOST", 0)  # every search takes that way
    rows = generated_rows(120, seed=4)
    con = overview(rows)
    by_sql, from_memory = both(rows, con)
    for q in ("it-", "a", "ss"):
        arguments = {"q": q, "category": None, "site": None, "sort": sort, "limit": 7}
        assert walk(from_memory, **arguments) == walk(by_sql, **arguments), q


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("risk", ["C", "A", "B", "D"]),  # highest risk first, null as 0, ties by id
        ("cover", ["D", "B", "A", "C"]),  # fewest days first, no cover figure last
        ("units", ["B", "D", "A", "C"]),  # most units first
    ],
)
def test_value_orders_are_the_documented_ones(sort: str, expected: list[str]) -> None:
    rows = [
        ("A", "a", "Radio", "north", "pcs", 0.5, 10.0, 5.0),
        ("B", "b", "Radio", "north", "pcs", None, 2.0, 9.0),
        ("C", "c", "Radio", "north", "pcs", 0.9, None, 1.0),
        ("D", "d", "Radio", "north", "pcs", 0.0, 0.0, 9.0),
    ]
    for handle in both(rows, overview(rows)):
        pages = walk(handle, q=None, category=None, site=None, sort=sort, limit=1)
        shown = [msgspec.json.decode(page, type=ItemsPage).items for page in pages]
        assert [items[0].item_id for items in shown] == expected
