"""The items page (`#/items`) in Chromium on make demo's data, and item names shown whole.

Issue 17, part 3: beyond the overview's top 10, every item can be reached: a page of all items,
sorted by stock-out risk, days of cover or the next 30 days' units, filtered by category and
site, with what is chosen kept in the URL (so a reload or a shared link shows the same list).
The rows are the API's, in the API's order. Long item names and the search placeholder are not
cut off at 1366 px or at tablet width.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, ViewportSize, expect

from tests.browser.conftest import LONG_NAME_TAIL
from tests.browser.dashboard import DESKTOP, TABLET, Dashboard
from tests.integration.live_server import LiveServer

PAGE_SIZE = 50  # rows the page asks for at a time


def api(server: LiveServer, path: str, **params: str | int) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def api_ids(server: LiveServer, **params: str | int) -> list[str]:
    """The item ids of the first page the items page asks for, as the API answers it."""
    page = api(server, "/api/v1/items", limit=PAGE_SIZE, **params)
    return [item["item_id"] for item in page["items"]]


def shown(dashboard: Dashboard) -> list[str | None]:
    return [row.get_attribute("data-item-id") for row in dashboard.get("item-row").all()]


def hash_query(page: Page) -> dict[str, list[str]]:
    """The query of the URL's hash route (`#/items?sort=cover` -> {"sort": ["cover"]})."""
    fragment = urlsplit(page.url).fragment
    return parse_qs(fragment.partition("?")[2])


def settled(dashboard: Dashboard) -> None:
    expect(dashboard.get("loading")).to_have_count(0)


@pytest.fixture
def demo(page: Page, demo_server: LiveServer) -> Dashboard:
    return Dashboard(page, demo_server)


def test_the_items_page_lists_every_item_by_risk_first(demo: Dashboard) -> None:
    total = api(demo.server, "/api/v1/items", limit=1)["total"]
    assert total > PAGE_SIZE  # make demo's 200 items: more than one page
    demo.open_items()
    expect(demo.get("item-row")).to_have_count(PAGE_SIZE)
    assert shown(demo) == api_ids(demo.server, sort="risk")
    expect(demo.get("items-count")).to_have_attribute("data-total", str(total))
    expect(demo.get("sort-risk")).to_have_attribute("aria-pressed", "true")


def test_show_more_appends_the_next_pages_until_every_item(demo: Dashboard) -> None:
    everything = [
        item["item_id"]
        for item in api(demo.server, "/api/v1/items", sort="risk", limit=500)["items"]
    ]
    demo.open_items()
    more = demo.get("items-more")
    while more.count():
        before = demo.get("item-row").count()
        more.click()
        expect(demo.get("item-row")).to_have_count(min(before + PAGE_SIZE, len(everything)))
    assert shown(demo) == everything
    expect(demo.get("items-count")).to_have_attribute("data-shown", str(len(everything)))


@pytest.mark.parametrize(
    ("sort", "ascending"), [("cover", True), ("units", False), ("item_id", True)]
)
def test_sorting_is_the_apis_and_survives_a_reload(
    demo: Dashboard, sort: str, ascending: bool
) -> None:
    demo.open_items()
    demo.get(f"sort-{sort}").click()
    expect(demo.get(f"sort-{sort}")).to_have_attribute("aria-pressed", "true")
    settled(demo)
    expected = api_ids(demo.server, sort=sort)
    assert shown(demo) == expected
    assert hash_query(demo.page)["sort"] == [sort]
    heading = demo.page.locator("th", has=demo.get(f"sort-{sort}"))
    expect(heading).to_have_attribute("aria-sort", "ascending" if ascending else "descending")

    demo.page.reload()
    expect(demo.get(f"sort-{sort}")).to_have_attribute("aria-pressed", "true")
    expect(demo.get("item-row").first).to_be_visible()
    assert shown(demo) == expected


def test_filters_are_in_the_url_and_survive_a_reload(demo: Dashboard) -> None:
    summary = api(demo.server, "/api/v1/forecasts/summary")
    category, site = summary["categories"][1], summary["sites"][0]
    demo.open_items()
    demo.get("items-category").select_option(category)
    settled(demo)
    demo.get("items-site").select_option(site)
    settled(demo)
    demo.get("sort-cover").click()
    settled(demo)
    expected = api_ids(demo.server, sort="cover", category=category, site=site)
    assert shown(demo) == expected
    assert hash_query(demo.page) == {"category": [category], "site": [site], "sort": ["cover"]}

    demo.page.reload()
    expect(demo.get("items-category")).to_have_value(category)
    expect(demo.get("items-site")).to_have_value(site)
    expect(demo.get("item-row")).to_have_count(len(expected))
    assert shown(demo) == expected

    demo.get("items-clear").click()
    settled(demo)
    assert hash_query(demo.page) == {"sort": ["cover"]}
    assert shown(demo) == api_ids(demo.server, sort="cover")


def test_a_shared_link_opens_the_same_list(demo: Dashboard) -> None:
    """A URL typed or shared, with a text search too, shows what the API finds for it."""
    demo.open_items("q=battery&sort=units")
    expect(demo.get("items-search")).to_have_value("battery")
    expected = api_ids(demo.server, q="battery", sort="units")
    assert expected
    expect(demo.get("item-row")).to_have_count(len(expected))
    assert shown(demo) == expected


def test_the_overview_leads_to_every_item_with_its_filters(demo: Dashboard) -> None:
    summary = api(demo.server, "/api/v1/forecasts/summary")
    category = summary["categories"][0]
    demo.open_overview()
    demo.get("filter-category").select_option(category)
    settled(demo)
    demo.get("all-items-link").click()
    expect(demo.get("items-category")).to_have_value(category)
    expect(demo.get("item-row").first).to_be_visible()
    assert shown(demo) == api_ids(demo.server, sort="risk", category=category)
    demo.get("item-row").first.get_by_role("link").click()
    demo.wait_for_charts()


# --- long names ----------------------------------------------------------------------------------

# Each element that shows an item's name: whether all of it is shown (nothing cut off or hidden).
WHOLE = """elements => elements.map(e => ({
  text: e.textContent,
  whole: e.scrollWidth <= e.clientWidth + 1 && getComputedStyle(e).textOverflow !== "ellipsis",
}))"""


def names_shown_whole(where: Locator) -> list[dict[str, Any]]:
    cut: list[dict[str, Any]] = [n for n in where.evaluate_all(WHOLE) if not n["whole"]]
    return cut


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1366x768", "768x1024"])
def test_long_item_names_are_shown_whole(
    page: Page, long_names_server: LiveServer, viewport: ViewportSize
) -> None:
    dashboard = Dashboard(page, long_names_server)
    page.set_viewport_size(viewport)
    riskiest = api(long_names_server, "/api/v1/items", sort="risk", limit=10)["items"]
    assert all(item["name"].endswith(LONG_NAME_TAIL) for item in riskiest)

    dashboard.open_overview()
    names = page.locator('[data-testid="risk-row"] .name')
    expect(names).to_have_count(len(riskiest))
    assert names.all_inner_texts() == [item["name"] for item in riskiest]
    assert not names_shown_whole(names)

    dashboard.get("search-input").fill("IT-000001")
    expect(dashboard.get("search-result").first).to_be_visible()
    assert not names_shown_whole(page.locator('[data-testid="search-result"] .result-name'))

    dashboard.open_items()
    assert not names_shown_whole(page.locator('[data-testid="item-row"] .name-cell'))
    table = page.locator(".card-items .table-wrap")
    assert table.evaluate("e => e.scrollWidth <= e.clientWidth"), "the items table scrolls sideways"
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the items page is {overflow} px too wide"
