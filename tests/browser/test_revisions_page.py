"""Forecast revisions on the dashboard, in Chromium against the real server with two versions.

Issue 17, part 2: a page of what changed between the served version and an earlier one (totals,
by category, by site, item by item), whose numbers are the API's; on the item page the earlier
version's forecast as a second line that can be turned on, drawn on the API's days.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser.dashboard import Dashboard
from tests.integration.live_server import LiveServer


def api(server: LiveServer, path: str, **params: str | int) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def hash_query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).fragment.partition("?")[2])


MINUS = "\u2212"  # the page writes negative changes with a true minus sign
NO_VALUE = "\u2013"  # an en dash: a missing number


def signed(value: float, digits: int) -> str:
    """As the page writes a change: +1,234.5, MINUS 3, 0."""
    text = f"{abs(value):,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if float(text.replace(",", "")) == 0:
        return text
    return f"+{text}" if value > 0 else f"{MINUS}{text}"


@pytest.fixture
def revisions(page: Page, two_versions: LiveServer) -> Dashboard:
    return Dashboard(page, two_versions)


def open_revisions(dashboard: Dashboard, query: str = "") -> None:
    dashboard.open(f"/revisions{'?' + query if query else ''}")
    expect(dashboard.get("revisions-against")).to_be_visible()
    expect(dashboard.get("loading")).to_have_count(0)


def test_the_revisions_page_shows_the_apis_numbers(revisions: Dashboard) -> None:
    answer = api(revisions.server, "/api/v1/revisions", limit=50)
    assert answer["against"]["version"] == "v0001" and answer["current"]["version"] == "v0002"
    open_revisions(revisions)
    expect(revisions.get("revisions-against")).to_have_value("v0001")
    expect(revisions.get("revision-versions")).to_contain_text(f"{answer['window']['days']} days")

    totals = answer["totals"]
    change = revisions.page.locator('[data-testid="revision-total"][data-metric="forecast_change"]')
    expect(change.locator(".kpi-value")).to_have_text(signed(totals["forecast_change"], 0))
    changed = revisions.page.locator('[data-testid="revision-total"][data-metric="items_changed"]')
    expect(changed.locator(".kpi-value")).to_have_text(f"{totals['items_changed']:,}")

    for key in ("category", "site"):
        rows = revisions.page.locator(f'[data-testid="revision-group"][data-group="{key}"]')
        groups = answer[f"by_{key}"]
        expect(rows).to_have_count(len(groups))
        for row, group in zip(rows.all(), groups, strict=True):
            assert row.get_attribute("data-name") == group[key]
            pct = group["forecast_change_pct"]
            expect(row).to_contain_text(NO_VALUE if pct is None else f"{signed(pct, 1)}%")

    rows = revisions.get("revision-row")
    expect(rows).to_have_count(len(answer["items"]))
    for row, item in zip(rows.all(), answer["items"], strict=True):
        assert row.get_attribute("data-item-id") == item["item_id"]
        assert row.get_attribute("data-status") == item["status"]
        if item["forecast_change"] is not None:
            expect(row).to_contain_text(signed(item["forecast_change"], 1))


@pytest.mark.parametrize("sort", ["change_pct", "risk", "item_id"])
def test_sorting_and_filters_are_the_apis_and_in_the_url(revisions: Dashboard, sort: str) -> None:
    category = api(revisions.server, "/api/v1/forecasts/summary")["categories"][0]
    open_revisions(revisions)
    revisions.get("revisions-category").select_option(category)
    expect(revisions.get("loading")).to_have_count(0)
    revisions.get(f"revisions-sort-{sort}").click()
    expect(revisions.get(f"revisions-sort-{sort}")).to_have_attribute("aria-pressed", "true")
    expect(revisions.get("loading")).to_have_count(0)
    expected = [
        i["item_id"]
        for i in api(revisions.server, "/api/v1/revisions", sort=sort, category=category)["items"]
    ]
    shown = [row.get_attribute("data-item-id") for row in revisions.get("revision-row").all()]
    assert shown == expected
    assert hash_query(revisions.page) == {"category": [category], "sort": [sort]}
    revisions.page.reload()
    expect(revisions.get("revisions-category")).to_have_value(category)
    expect(revisions.get("revision-row")).to_have_count(len(expected))


def test_the_first_version_says_there_is_nothing_to_compare(dashboard: Dashboard) -> None:
    answer = api(dashboard.server, "/api/v1/revisions")
    assert answer["against"] is None
    open_revisions(dashboard)
    expect(dashboard.get("revision-note")).to_contain_text(answer["note"])
    expect(dashboard.get("revision-row")).to_have_count(0)
    expect(dashboard.get("revisions-against")).to_be_disabled()


# --- the second line on the item page ------------------------------------------------------------


def test_the_earlier_forecast_is_a_second_line_turned_on_and_off(revisions: Dashboard) -> None:
    item = api(revisions.server, "/api/v1/revisions", limit=1)["items"][0]["item_id"]
    series = api(revisions.server, f"/api/v1/items/{item}/revision")
    drawn = sum(1 for v in series["against_yhat"] if v is not None)
    assert drawn
    revisions.open_item(item)
    chart = revisions.get("forecast-chart")
    toggle = revisions.get("previous-toggle")
    expect(toggle).not_to_be_checked()
    expect(chart).to_have_attribute("data-other-shown", "false")
    expect(chart).to_have_attribute("data-other-points", str(drawn))
    expect(chart.locator(".u-legend")).to_contain_text("v0001 forecast")
    expect(revisions.get("previous-note")).to_contain_text(f"{series['window']['days']} days")

    toggle.check()
    expect(chart).to_have_attribute("data-other-shown", "true")
    expect(revisions.page).to_have_url(re.compile(rf"#/items/{item}\?against=v0001$"))
    revisions.page.reload()
    revisions.wait_for_charts()
    expect(revisions.get("previous-toggle")).to_be_checked()
    expect(revisions.get("forecast-chart")).to_have_attribute("data-other-shown", "true")

    # The legend entry turns it off too, and the box follows.
    revisions.get("forecast-chart").locator(
        ".u-legend .u-series", has_text="v0001 forecast"
    ).click()
    expect(revisions.get("previous-toggle")).not_to_be_checked()
    expect(revisions.page).to_have_url(re.compile(rf"#/items/{item}$"))


def test_an_item_row_opens_the_item_with_the_line_on(revisions: Dashboard) -> None:
    open_revisions(revisions)
    row = revisions.get("revision-row").first
    item = row.get_attribute("data-item-id")
    row.get_by_role("link").first.click()
    revisions.wait_for_charts()
    expect(revisions.page).to_have_url(re.compile(rf"#/items/{item}\?against=v0001$"))
    expect(revisions.get("forecast-chart")).to_have_attribute("data-other-shown", "true")


def test_an_item_of_the_first_version_has_no_second_line(dashboard: Dashboard) -> None:
    dashboard.open_item("IT-0000001")
    expect(dashboard.get("previous-toggle")).to_have_count(0)


def legend_values(chart: Any) -> dict[str, str]:
    rows = chart.locator(".u-legend .u-series")
    return {
        row.locator(".u-label").inner_text().strip(): row.locator(".u-value").inner_text().strip()
        for row in rows.all()
    }


def test_the_second_line_s_points_are_the_api_s_day_by_day(revisions: Dashboard) -> None:
    """The cursor is moved over the chart; at each day it lands on, the legend's value of the
    earlier forecast is the API's value for that day (none where that version had none)."""
    item = api(revisions.server, "/api/v1/revisions", limit=1)["items"][0]["item_id"]
    series = api(revisions.server, f"/api/v1/items/{item}/revision")
    earlier = dict(zip(series["dates"], series["against_yhat"], strict=True))
    label = f"{series['against']['version']} forecast"
    revisions.open(f"/items/{item}?against=v0001")
    revisions.wait_for_charts()
    chart = revisions.get("forecast-chart")
    expect(chart).to_have_attribute("data-other-shown", "true")
    over = chart.locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    seen: dict[str, str] = {}
    for step in range(1, 40):
        revisions.page.mouse.move(box["x"] + box["width"] * step / 40, box["y"] + box["height"] / 2)
        values = legend_values(chart)
        seen[values["Date"][:10]] = values[label]
    assert len(seen) >= 30, seen  # the cursor landed on that many different days
    compared = 0
    for day, shown in seen.items():
        value = earlier.get(day)
        if value is None:
            assert shown == NO_VALUE, (day, shown)
        else:
            assert shown == f"{value:,.3f}".rstrip("0").rstrip("."), (day, shown, value)
            compared += 1
    assert compared >= 10, seen  # most of them are days both versions forecast
