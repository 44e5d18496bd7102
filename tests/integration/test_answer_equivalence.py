"""Ranges and item pages made from memory are the SQL's answers, byte for byte, on demo data.

Before the fast path, a date range was a query of fact_forecast and a page of items a query of
item_overview (`server.bodies.timeseries_query` and `list_items_query`, kept for versions
imported before the series and the index existed). On a version imported from the demo tables,
the answers made from the series and the in-memory index must be the same bytes for every item
and a spread of ranges, and for every page of a spread of searches.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import msgspec
import pytest

from appliance.data.store import DataStore
from server.bodies import items_page, list_items_query, range_body, timeseries_query
from server.data import VersionHandle
from server.schemas import ItemsPage
from tests.conftest import SMALL_ITEMS, Signer, import_into

A_SITE = "<the first item's site>"
FIRST_DAY = date(2026, 9, 23)  # good_pack: 40 days up to its generated_at, 2026-11-01


@pytest.fixture(scope="module")
def handle(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[VersionHandle]:
    data_dir = tmp_path_factory.mktemp("equivalence") / "data"
    import_into(data_dir, good_pack, signer)
    store = DataStore(data_dir)
    vid = store.current_vid()
    assert vid is not None
    opened = VersionHandle(store.version(vid), "256MB", 1)
    assert opened.wait_for_items(timeout=60)
    assert opened.items is not None
    assert opened.items.wait_for_grams(timeout=60)
    yield opened
    opened.retire()


def test_the_version_has_what_the_fast_answers_need(handle: VersionHandle) -> None:
    assert handle.has_series(), "the import writes each item's series"
    assert handle.items is not None
    assert len(handle.items) == SMALL_ITEMS


RANGES = [
    (None, None),
    (FIRST_DAY, None),
    (None, FIRST_DAY),
    (FIRST_DAY + timedelta(days=3), FIRST_DAY + timedelta(days=20)),
    (FIRST_DAY - timedelta(days=400), FIRST_DAY + timedelta(days=400)),
    (FIRST_DAY + timedelta(days=10), FIRST_DAY + timedelta(days=10)),
    (date(2030, 1, 1), date(2030, 12, 31)),
    (date(1990, 1, 1), date(1990, 1, 2)),
]


def test_every_range_of_every_item_is_the_querys(handle: VersionHandle) -> None:
    assert handle.items is not None
    for item in handle.items.items:
        item_id = item.item_id
        for start, end in RANGES:
            made = range_body(handle, item_id, start, end)
            assert made == timeseries_query(handle, item_id, start, end), (item_id, start, end)


def every_page(handle: VersionHandle, from_memory: bool, **query: object) -> list[bytes]:
    pages: list[bytes] = []
    cursor = None
    while len(pages) < 100:
        make = items_page if from_memory else list_items_query
        body = make(handle, cursor=cursor, **query)  # type: ignore[arg-type]
        pages.append(body)
        cursor = msgspec.json.decode(body, type=ItemsPage).next
        if cursor is None:
            break
    return pages


@pytest.mark.parametrize(
    "query",
    [
        {"q": None, "category": None, "site": None},
        {"q": "it-00000", "category": None, "site": None},
        {"q": "IT-0000012", "category": None, "site": None},
        {"q": "a", "category": None, "site": None},
        {"q": None, "category": "Radio", "site": None},
        {"q": None, "category": None, "site": A_SITE},
        {"q": None, "category": "Radio", "site": A_SITE},
        {"q": "e", "category": "Power", "site": None},
    ],
    ids=str,
)
@pytest.mark.parametrize("sort", ["item_id", "risk", "cover", "units"])
@pytest.mark.parametrize("limit", [1, 4, 50])
def test_every_page_of_a_search_is_the_querys(
    handle: VersionHandle, query: dict[str, str | None], sort: str, limit: int
) -> None:
    assert handle.items is not None
    if query["site"] == A_SITE:
        query = {**query, "site": handle.items.items[0].site}
    arguments = {**query, "sort": sort, "limit": limit}
    assert every_page(handle, True, **arguments) == every_page(handle, False, **arguments)
