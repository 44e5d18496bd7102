"""The dashboard in Debian's Chromium against the real server with demo data.

Issue acceptance points: navigation through every page; each chart has as many points as the API
returned; "Last updated" is the API's `generated_at`; an admin upload of a good pack switches the
displayed version, a bad one shows the refusal reason and changes nothing; a new data version
while the page is open offers a reload; the no-data, unreachable, unauthorized and not-found
states; keyboard navigation with a visible focus; charts labelled for screen readers; no
horizontal scrollbar at 1366x768 and 768x1024; no ML wording; no request to any other origin; the
JS+CSS budget. The screenshots are taken by test_screenshots.py, on make demo's data.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Error, Page, Request, Response, Route, ViewportSize, expect

from tests.browser.dashboard import (
    DESKTOP,
    JS_CSS_BUDGET,
    POLL_SECONDS,
    TABLET,
    Dashboard,
    RequestLog,
    gzipped_sizes,
)
from tests.conftest import Signer, current_of, import_into, versions_json
from tests.integration.live_server import VIEWER_TOKEN, LiveServer

KPI_METRICS = {
    "items",
    "items_at_risk",
    "forecast_units_next_30d",
    "mape",
    "wape",
    "bias",
    "coverage",
}
ML_WORDS = re.compile(r"\b(predict|train|retrain|inference)", re.IGNORECASE)
SEARCH = "IT-000001"  # ten of the thirty demo items: IT-0000010 to IT-0000019
UPLOAD_TIMEOUT_MS = 30_000
BANNER_TIMEOUT_MS = 10_000

# What an element in focus shows: an outline that is drawn, or a box shadow (a focus ring).
FOCUS = """() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  return {
    testid: element.getAttribute("data-testid"),
    tag: element.tagName.toLowerCase(),
    text: (element.textContent || "").trim().slice(0, 40),
    ring: (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
      || style.boxShadow !== "none",
  };
}"""
# The chart's accessible label: on the container itself or on an element inside it.
CHART_LABEL = """container => {
  const image = container.matches('[role="img"]') ? container : container.querySelector('[role="img"]');
  return image ? image.getAttribute("aria-label") : null;
}"""
# Everything a user can read or hear on the page: text (hidden too), labels, tooltips, title.
READABLE = """() => [
  document.title,
  document.body.textContent,
  ...[...document.querySelectorAll("[aria-label],[title],[placeholder],[alt]")].flatMap(e =>
    ["aria-label", "title", "placeholder", "alt"].map(a => e.getAttribute(a) || "")),
].join("\\n")"""
# How many pixels the chart's canvases have drawn on (uPlot draws on canvas; 0: a blank chart).
INKED_PIXELS = """container => [...container.querySelectorAll("canvas")].reduce((inked, canvas) => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) count += 1;
  return inked + count;
}, 0)"""
OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"
NO_VALUE = "\u2013"  # an en dash: what the dashboard shows for a missing number


# --- helpers -------------------------------------------------------------------------------------


def api(server: LiveServer, path: str, **params: str | int) -> Any:
    """The JSON answer of a GET on the API, fetched directly (not through the browser)."""
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def number(value: int) -> re.Pattern[str]:
    """Text that shows `value` as a whole number (so 3 does not match inside 30)."""
    return re.compile(rf"(?<![\d.,]){value:,}(?![\d,]|\.\d)")


def every_page(dashboard: Dashboard, item_id: str) -> Iterator[str]:
    """Open each page in turn, signed in on the admin page; yield its name once it has loaded."""
    dashboard.open_overview()
    yield "overview"
    dashboard.open_items()
    yield "items"
    dashboard.open_item(item_id)
    yield "item"
    dashboard.open("/revisions")
    expect(dashboard.get("revisions-against")).to_be_visible()
    yield "revisions"
    dashboard.open_data()
    yield "data"
    dashboard.open_admin()
    yield "admin"


def tab_through(page: Page, presses: int) -> list[dict[str, Any]]:
    """Press Tab `presses` times; what had the focus after each press (nothing: body)."""
    focused = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        element = page.evaluate(FOCUS)
        if element is not None:
            focused.append(element)
    return focused


def upload(dashboard: Dashboard, pack: Path) -> None:
    """Choose `pack` in the admin panel and upload it."""
    dashboard.get("upload-input").set_input_files(pack)
    dashboard.get("upload-button").click()


class AssetLinks(HTMLParser):
    """The src and href values of index.html that name files (not data: URLs)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value and not value.startswith(("data:", "#")):
                self.links.add(value)


def dist_path(url_path: str) -> str:
    """A URL path or index.html link as a path relative to dist/ (`./assets/a.js` -> `assets/a.js`)."""
    return url_path.removeprefix("./").lstrip("/")


@pytest.fixture(scope="module")
def riskiest_item(server: LiveServer) -> str:
    """The item with the highest stock-out risk: the one an analyst opens first."""
    item_id: str = api(server, "/api/v1/items", sort="risk", limit=1)["items"][0]["item_id"]
    return item_id


# --- navigation and overview ---------------------------------------------------------------------


def test_nav_and_search_reach_every_page(dashboard: Dashboard) -> None:
    page = dashboard.page
    crashes: list[Error] = []
    # Playwright marks each handler with an attribute, which a bound builtin cannot take: a lambda.
    page.on("pageerror", lambda error: crashes.append(error))  # noqa: PLW0108
    dashboard.open_overview()
    expect(dashboard.badge()).to_have_text("v0001")

    dashboard.get("nav-data").click()
    expect(page).to_have_url(re.compile(r"#/data$"))
    expect(dashboard.get("current-version")).to_have_attribute("data-version", "v0001")

    dashboard.get("nav-admin").click()
    expect(page).to_have_url(re.compile(r"#/admin$"))
    expect(dashboard.get("admin-token-input")).to_be_visible()

    dashboard.get("nav-overview").click()
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(dashboard.get("kpi-card").first).to_be_visible()

    dashboard.get("search-input").fill("IT-0000007")
    result = dashboard.get("search-result")
    expect(result).to_have_count(1)
    result.click()
    expect(page).to_have_url(re.compile(r"#/items/IT-0000007$"))
    expect(dashboard.get("item-title")).to_contain_text("#00007")
    dashboard.wait_for_charts()
    assert not crashes, f"uncaught errors in the page: {crashes}"


def test_overview_shows_every_kpi_and_the_riskiest_items(
    dashboard: Dashboard, server: LiveServer
) -> None:
    summary = api(server, "/api/v1/forecasts/summary")
    riskiest = api(server, "/api/v1/items", sort="risk", limit=10)["items"]
    dashboard.open_overview()

    cards = dashboard.get("kpi-card")
    metrics = [card.get_attribute("data-metric") for card in cards.all()]
    assert set(metrics) >= KPI_METRICS, f"KPI cards: {metrics}"
    assert len(metrics) == len(set(metrics)), f"a KPI shown twice: {metrics}"
    for metric in ("items", "items_at_risk"):
        card = dashboard.page.locator(f'[data-testid="kpi-card"][data-metric="{metric}"]')
        expect(card).to_have_text(number(summary[metric]))

    shown = [row.get_attribute("data-item-id") for row in dashboard.get("risk-row").all()]
    assert shown == [item["item_id"] for item in riskiest]


def group_metrics(dashboard: Dashboard, group: str) -> list[str | None]:
    """The metrics of the KPI cards in one group of the overview (`counts` or `quality`)."""
    cards = dashboard.page.locator(f".kpi-group-{group} [data-testid='kpi-card']")
    return [card.get_attribute("data-metric") for card in cards.all()]


def test_forecast_quality_holds_only_backtest_figures(
    dashboard: Dashboard, server: LiveServer
) -> None:
    """Figures about the days ahead (forecast units, stock-outs) are stock and demand, and the
    workstation's 30-day units, the node's own total again, are not shown twice."""
    summary = api(server, "/api/v1/forecasts/summary")
    ahead = {k["metric"]: k for k in summary["kpis"] if k["period"].startswith("next_")}
    assert {"forecast_units", "stockout_items"} <= set(ahead), summary["kpis"]
    dashboard.open_overview()
    quality = group_metrics(dashboard, "quality")
    counts = group_metrics(dashboard, "counts")
    assert not set(ahead) & set(quality), f"figures about the days ahead under quality: {quality}"
    assert "stockout_items" in counts
    units = dashboard.page.locator('[data-testid="kpi-card"][data-metric="forecast_units"]')
    if ahead["forecast_units"]["period"] == "next_30d":
        expect(units).to_have_count(0)  # the same sum as forecast_units_next_30d
    else:  # another window (the small demo's horizon is 10 days): its own card, named so
        expect(units).to_contain_text(
            ahead["forecast_units"]["period"].split("_")[1][:-1] + " days"
        )
    stockouts = dashboard.page.locator('[data-testid="kpi-card"][data-metric="stockout_items"]')
    expect(stockouts).to_have_text(number(int(ahead["stockout_items"]["value"])))


@pytest.mark.parametrize(
    ("filters", "says"),
    [
        ({}, "for all items"),
        ({"category": "first"}, "for category "),
        ({"category": "first", "site": "first"}, "not computed for a category and a site together"),
    ],
    ids=["global", "category", "none"],
)
def test_kpi_scope_is_said_in_words(
    dashboard: Dashboard, server: LiveServer, filters: dict[str, str], says: str
) -> None:
    summary = api(server, "/api/v1/forecasts/summary")
    dashboard.open_overview()
    for name, values in (("category", summary["categories"]), ("site", summary["sites"])):
        if name in filters:
            dashboard.get(f"filter-{name}").select_option(values[0])
            expect(dashboard.get("loading")).to_have_count(0)
    expect(dashboard.get("kpi-scope")).to_contain_text(says)
    readable = dashboard.page.evaluate(READABLE)
    assert not re.search(r"scope (global|none|category|site)", readable), "KPI scope jargon"


def test_mape_and_wape_are_explained_for_intermittent_demand(dashboard: Dashboard) -> None:
    dashboard.open_overview()
    note = dashboard.get("kpi-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("intermittent")
    for metric in ("mape", "wape"):
        card = dashboard.page.locator(f'[data-testid="kpi-card"][data-metric="{metric}"]')
        title = card.get_attribute("title") or ""
        assert "demand" in title, f"{metric} card says nothing of demand: {title!r}"


def test_filters_offer_the_api_values_and_narrow_the_overview(
    dashboard: Dashboard, server: LiveServer
) -> None:
    summary = api(server, "/api/v1/forecasts/summary")
    dashboard.open_overview()
    for name, values in (
        ("filter-category", summary["categories"]),
        ("filter-site", summary["sites"]),
    ):
        options = dashboard.get(name).locator("option")
        offered = [option.get_attribute("value") for option in options.all()]
        assert offered == ["", *values], f"{name} offers {offered}"

    category = summary["categories"][0]
    narrowed = api(server, "/api/v1/forecasts/summary", category=category)
    assert narrowed["items"] != summary["items"]
    riskiest = api(server, "/api/v1/items", sort="risk", limit=10, category=category)["items"]
    dashboard.get("filter-category").select_option(category)
    items = dashboard.page.locator('[data-testid="kpi-card"][data-metric="items"]')
    expect(items).to_have_text(number(narrowed["items"]))
    rows = dashboard.get("risk-row")
    expect(rows).to_have_count(len(riskiest))
    assert [row.get_attribute("data-item-id") for row in rows.all()] == [
        item["item_id"] for item in riskiest
    ]


def test_search_lists_the_items_the_api_finds(dashboard: Dashboard, server: LiveServer) -> None:
    found = [item["item_id"] for item in api(server, "/api/v1/items", q=SEARCH)["items"]]
    assert len(found) == 10
    dashboard.open_overview()
    dashboard.get("search-input").fill(SEARCH)
    results = dashboard.get("search-result")
    expect(results).to_have_count(len(found))
    assert [result.get_attribute("data-item-id") for result in results.all()] == found


# --- item page -----------------------------------------------------------------------------------


def test_charts_plot_as_many_points_as_the_api_returned(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    inventory = api(server, f"/api/v1/inventory/{riskiest_item}")
    assert series["points"] == len(series["dates"])
    dashboard.open_item(riskiest_item)

    for chart, table, dates in (
        ("forecast-chart", "forecast-table", series["dates"]),
        ("inventory-chart", "inventory-table", inventory["dates"]),
    ):
        expect(dashboard.get(chart)).to_have_attribute("data-points", str(len(dates)))
        rows = dashboard.get(table).get_by_test_id("table-row")
        expect(rows).to_have_count(len(dates))
        shown = [row.get_attribute("data-date") or "" for row in rows.all()]
        assert sorted(shown) == sorted(dates), f"{table}: the table's days are not the API's"
        assert dashboard.get(chart).evaluate(INKED_PIXELS) > 0, f"{chart}: nothing drawn"


def test_last_updated_is_the_generated_at_of_the_api(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    dashboard.open_item(riskiest_item)
    stamps = dashboard.get("last-updated")
    expect(stamps).to_have_count(2)
    for stamp in stamps.all():
        expect(stamp).to_have_attribute("data-generated-at", series["generated_at"])
        expect(stamp).to_contain_text(series["generated_at"][:10])
        expect(stamp).to_contain_text("ago")
    infos = dashboard.get("model-info")
    expect(infos.first).to_be_visible()
    for info in infos.all():
        expect(info).to_contain_text(series["model_version"])
        expect(info).to_contain_text(series["source"])


def test_charts_are_labelled_for_screen_readers(dashboard: Dashboard, riskiest_item: str) -> None:
    dashboard.open_item(riskiest_item)
    for chart in ("forecast-chart", "inventory-chart"):
        label = dashboard.get(chart).evaluate(CHART_LABEL)
        assert label and label.strip(), f'{chart}: no role="img" with a non-empty aria-label'


def test_forecast_table_starts_with_the_days_ahead(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    """The horizon at the top, from the next day on; then the past, newest first."""
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    today = series["generated_at"][:10]
    ahead = [d for d in series["dates"] if d > today]
    past = [d for d in series["dates"] if d <= today]
    assert ahead and past
    dashboard.open_item(riskiest_item)
    table = dashboard.get("forecast-table")
    shown = [row.get_attribute("data-date") for row in table.get_by_test_id("table-row").all()]
    assert shown == ahead + past[::-1]
    groups = table.get_by_test_id("table-group")
    expect(groups).to_have_count(2)
    expect(groups.first).to_contain_text(f"{len(ahead)} days")
    expect(groups.last).to_contain_text("newest first")


def test_both_charts_show_the_same_days(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    inventory = api(server, f"/api/v1/inventory/{riskiest_item}")
    last = max(series["dates"][-1], inventory["dates"][-1])
    dashboard.open_item(riskiest_item)
    charts = [dashboard.get("forecast-chart"), dashboard.get("inventory-chart")]

    def shown() -> list[tuple[str | None, str | None]]:
        return [
            (c.get_attribute("data-shown-from"), c.get_attribute("data-shown-to")) for c in charts
        ]

    expect(charts[1]).to_have_attribute("data-shown-to", last)
    assert shown()[0] == shown()[1], f"the charts show different days: {shown()}"
    dashboard.get("window-all").click()
    expect(charts[0]).to_have_attribute("data-shown-from", series["dates"][0])
    expect(charts[1]).to_have_attribute("data-shown-from", series["dates"][0])
    dashboard.get("window-30").click()
    generated = date.fromisoformat(series["generated_at"][:10])
    first = max(series["dates"][0], (generated - timedelta(days=30)).isoformat())
    for chart in charts:
        expect(chart).to_have_attribute("data-shown-from", first)
        expect(chart).to_have_attribute("data-shown-to", last)
    expect(dashboard.get("window-30")).to_have_attribute("aria-pressed", "true")


def test_legends_show_numbers_before_any_hover(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    """Without a cursor on the chart, the legend shows the day the data was generated."""
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    day = series["generated_at"][:10]
    at = series["dates"].index(day)
    dashboard.open_item(riskiest_item)
    legend = dashboard.get("forecast-chart").locator(".u-legend .u-series")
    values = {
        row.locator(".u-label").inner_text().strip(): row.locator(".u-value").inner_text().strip()
        for row in legend.all()
    }
    assert values["Date"].startswith(day), values
    assert values["Forecast"] == f"{series['yhat'][at]:,.3f}".rstrip("0").rstrip("."), values
    assert values["Backtest"] == values["Forecast"], values  # the two lines meet on that day
    assert values["Actual"] != NO_VALUE, values
    stock = dashboard.get("inventory-chart").locator(".u-legend .u-value")
    assert NO_VALUE not in [value.inner_text().strip() for value in stock.all()]


def test_the_line_over_past_days_is_called_the_backtest(
    dashboard: Dashboard, server: LiveServer, riskiest_item: str
) -> None:
    series = api(server, f"/api/v1/items/{riskiest_item}/timeseries")
    observed = [v for v in series["actual"] if v is not None]
    dashboard.open_item(riskiest_item)
    labels = dashboard.get("forecast-chart").locator(".u-legend .u-label").all_inner_texts()
    assert {"Backtest", "Forecast", "Actual"} <= {label.strip() for label in labels}, labels
    note = dashboard.get("forecast-note")
    expect(note).to_contain_text("backtest")
    # Actual demand is drawn as bars: a day without any draws none, which the note says.
    zero = sum(1 for v in observed if v == 0)
    assert zero, "the small demo has days without demand"
    expect(note).to_contain_text(f"{len(observed)} days observed, {zero} of them without demand")


# --- data and admin pages ------------------------------------------------------------------------


def test_data_page_shows_the_served_version_and_its_history(
    dashboard: Dashboard, server: LiveServer
) -> None:
    versions = api(server, "/api/v1/data/versions")
    dashboard.open_data()
    expect(dashboard.get("current-version")).to_have_attribute("data-version", versions["current"])
    expect(dashboard.get("current-version")).to_contain_text(versions["current"])
    rows = dashboard.get("history-row")
    expect(rows).to_have_count(len(versions["history"]))
    events = Counter(row.get_attribute("data-event") for row in rows.all())
    assert events == Counter(event["event"] for event in versions["history"])
    # Imported with `appliance import` on the node: said so, with the user and host.
    by = versions["versions"][0]["imported_via"]
    imported = dashboard.get("imported-by")
    expect(imported).to_have_attribute("data-via", "cli")
    expect(imported).to_contain_text(f"{by['user']}@{by['host']}")
    expect(imported).to_contain_text("command line")


def test_wrong_admin_token_opens_nothing(dashboard: Dashboard) -> None:
    dashboard.open_admin(token=None)
    dashboard.enter_token("not-the-admin-token-0123456789")
    refusal = dashboard.page.locator(
        '[data-testid="admin-message"], [data-testid="error-state"][data-kind="unauthorized"]'
    )
    expect(refusal.first).to_be_visible()
    expect(refusal.first).to_have_text(re.compile(r"\S"))
    expect(dashboard.get("admin-panel")).to_have_count(0)


def test_admin_upload_of_a_good_pack_switches_the_version(
    page: Page, fresh_server: LiveServer, newer_pack: Path
) -> None:
    dashboard = Dashboard(page, fresh_server)
    dashboard.open_admin()
    expect(dashboard.badge()).to_have_text("v0001")
    upload(dashboard, newer_pack)

    result = dashboard.get("upload-result")
    expect(result).to_have_attribute("data-status", "ok", timeout=UPLOAD_TIMEOUT_MS)
    expect(result).to_contain_text("v0002")
    expect(dashboard.get("upload-progress")).to_have_js_property("value", 100)
    expect(dashboard.badge()).to_have_text("v0002")
    assert current_of(fresh_server.data_dir) == "v0002"

    dashboard.get("nav-data").click()
    expect(dashboard.get("current-version")).to_have_attribute("data-version", "v0002")
    events = Counter(row.get_attribute("data-event") for row in dashboard.get("history-row").all())
    # Signing in checks the token with a refresh, which the trail records too.
    assert events == Counter({"import": 2, "refresh": 1})
    # The upload is told apart from v0001's import on the command line: the token, and how.
    via = api(fresh_server, "/api/v1/data/current")["imported_via"]
    assert via["via"] == "api"
    uploaded = dashboard.get("imported-by")
    expect(uploaded).to_have_attribute("data-via", "api")
    expect(uploaded).to_contain_text(f"token {via['token']}")
    expect(uploaded).to_contain_text(
        f"uploaded through the API (admin page or a script) from {via['client']}"
    )
    listed = dashboard.page.locator('tr[data-version] [data-testid="version-imported-by"]')
    assert [e.get_attribute("data-via") for e in listed.all()] == ["api", "cli"]  # newest first


@pytest.mark.parametrize(
    ("bad_pack", "reason"),
    [
        ("pack_signed_by_untrusted_key", "is not an allowed signer"),
        ("pack_with_symlink", "is a symbolic link"),
    ],
)
def test_admin_upload_of_a_bad_pack_shows_why_and_changes_nothing(
    page: Page,
    fresh_server: LiveServer,
    request: pytest.FixtureRequest,
    bad_pack: str,
    reason: str,
) -> None:
    pack: Path = request.getfixturevalue(bad_pack)
    before = versions_json(fresh_server.data_dir)
    dashboard = Dashboard(page, fresh_server)
    dashboard.open_admin()
    upload(dashboard, pack)

    result = dashboard.get("upload-result")
    expect(result).to_have_attribute("data-status", "refused", timeout=UPLOAD_TIMEOUT_MS)
    expect(result).to_contain_text(reason)
    expect(dashboard.badge()).to_have_text("v0001")
    assert versions_json(fresh_server.data_dir) == before
    assert api(fresh_server, "/api/v1/data/current")["version"] == "v0001"

    dashboard.get("nav-data").click()  # the refusal is in the audit trail, with its reason
    refusal = dashboard.page.locator('[data-testid="history-row"][data-event="reject"]')
    expect(refusal).to_have_count(1)
    expect(refusal).to_contain_text(reason)


def test_admin_rollback_serves_the_chosen_version(
    page: Page, fresh_server: LiveServer, newer_pack: Path, signer: Signer
) -> None:
    import_into(fresh_server.data_dir, newer_pack, signer)
    dashboard = Dashboard(page, fresh_server)
    dashboard.open_admin()
    expect(dashboard.badge()).to_have_text("v0002")
    dashboard.get("rollback-select").select_option("v0001")
    dashboard.get("rollback-button").click()
    expect(dashboard.badge()).to_have_text("v0001")
    expect(dashboard.get("admin-message")).to_contain_text("v0001")
    assert current_of(fresh_server.data_dir) == "v0001"


def test_admin_refresh_reports_the_served_version(dashboard: Dashboard) -> None:
    dashboard.open_admin()
    dashboard.get("refresh-button").click()
    expect(dashboard.get("admin-message")).to_contain_text("v0001")


# --- freshness and error states ------------------------------------------------------------------


def test_new_data_version_offers_a_reload(
    page: Page, fresh_server: LiveServer, newer_pack: Path, signer: Signer
) -> None:
    dashboard = Dashboard(page, fresh_server)
    dashboard.open_overview(poll=POLL_SECONDS)
    page.wait_for_timeout(2_500 * POLL_SECONDS)  # a few polls that see the same version
    banner = dashboard.get("version-banner")
    expect(banner).to_have_count(0)

    import_into(fresh_server.data_dir, newer_pack, signer)
    expect(banner).to_be_visible(timeout=BANNER_TIMEOUT_MS)
    banner.get_by_test_id("reload-button").click()
    expect(dashboard.badge()).to_have_text("v0002")
    expect(dashboard.get("kpi-card").first).to_be_visible()
    expect(banner).to_have_count(0)


@pytest.mark.parametrize("route", ["/", "/items/IT-0000001", "/data"])
def test_store_without_data_shows_the_no_data_state(
    page: Page, empty_server: LiveServer, route: str
) -> None:
    dashboard = Dashboard(page, empty_server)
    dashboard.open(route)
    state = dashboard.error_state("no-data")
    expect(state.first).to_be_visible()
    expect(state.first).to_have_text(re.compile(r"\S"))
    expect(dashboard.get("kpi-card")).to_have_count(0)
    expect(dashboard.get("forecast-chart")).to_have_count(0)


def test_first_import_is_noticed_by_an_open_page(
    page: Page, fresh_empty_server: LiveServer, good_pack: Path, signer: Signer
) -> None:
    dashboard = Dashboard(page, fresh_empty_server)
    dashboard.open("/", poll=POLL_SECONDS)
    expect(dashboard.error_state("no-data")).to_be_visible()
    import_into(fresh_empty_server.data_dir, good_pack, signer)
    banner = dashboard.get("version-banner")
    expect(banner).to_be_visible(timeout=BANNER_TIMEOUT_MS)
    banner.get_by_test_id("reload-button").click()
    expect(dashboard.get("kpi-card").first).to_be_visible()
    expect(dashboard.badge()).to_have_text("v0001")


def test_loading_state_shows_until_the_answers_come(dashboard: Dashboard) -> None:
    held: list[Route] = []
    dashboard.page.route("**/api/v1/forecasts/summary*", lambda route: held.append(route))  # noqa: PLW0108
    dashboard.open("/")
    expect(dashboard.get("loading").first).to_be_visible()
    expect(dashboard.get("kpi-card")).to_have_count(0)
    for _ in range(100):  # the route handler runs while Playwright waits: give it 5 s
        if held:
            break
        dashboard.page.wait_for_timeout(50)
    assert held, "the overview never asked for the summary"
    for route in held:
        route.continue_()
    expect(dashboard.get("kpi-card").first).to_be_visible()
    expect(dashboard.get("loading")).to_have_count(0)


def test_viewer_token_is_asked_for_and_a_wrong_one_refused(
    page: Page, viewer_server: LiveServer
) -> None:
    dashboard = Dashboard(page, viewer_server)
    dashboard.open("/")
    refused = dashboard.error_state("unauthorized")
    expect(refused).to_be_visible()
    for token in ("not-the-viewer-token-0123456789", VIEWER_TOKEN):
        refused.get_by_label("Access token").fill(token)
        refused.get_by_role("button", name="Continue").click()
        if token != VIEWER_TOKEN:
            # Wait for the answer to this token: the panel is re-rendered with the server's
            # reason, and typing before that would go into the panel about to be replaced.
            expect(refused).to_contain_text("token not valid")
            expect(dashboard.get("kpi-card")).to_have_count(0)
    expect(dashboard.get("kpi-card").first).to_be_visible()
    expect(dashboard.error_state("unauthorized")).to_have_count(0)


def test_unreachable_server_shows_the_unreachable_state(dashboard: Dashboard) -> None:
    dashboard.open_overview()
    dashboard.page.route("**/api/**", lambda route: route.abort())
    dashboard.page.reload()
    expect(dashboard.error_state("unreachable")).to_be_visible()


def test_page_recovers_when_the_server_is_back(dashboard: Dashboard) -> None:
    """The unreachable state says the page keeps checking: it does, at the poll interval."""
    dashboard.open_overview(poll=POLL_SECONDS)
    dashboard.page.route("**/api/**", lambda route: route.abort())
    dashboard.page.reload()
    expect(dashboard.error_state("unreachable")).to_be_visible()
    dashboard.page.unroute("**/api/**")
    expect(dashboard.get("kpi-card").first).to_be_visible(timeout=BANNER_TIMEOUT_MS)
    expect(dashboard.error_state("unreachable")).to_have_count(0)


def test_unknown_item_shows_the_not_found_state(dashboard: Dashboard) -> None:
    dashboard.open("/items/NOPE")
    expect(dashboard.error_state("not-found")).to_be_visible()
    expect(dashboard.get("forecast-chart")).to_have_count(0)


@pytest.mark.parametrize("route", ["/nope", "/items/IT-0000001/extra", "/data/v0001"])
def test_an_unknown_route_is_the_dashboards_own_not_found(dashboard: Dashboard, route: str) -> None:
    """The browser found out, not the server: the page says so and names the pages there are."""
    dashboard.open(route)
    state = dashboard.error_state("not-found")
    expect(state).to_be_visible()
    expect(state).to_have_attribute("data-where", "dashboard")
    expect(state).to_contain_text("This dashboard has no page at")
    expect(state).not_to_contain_text("server")
    expect(state.locator('a[href="#/items/IT-0000001"]')).to_be_visible()


def test_the_guessed_item_route_opens_the_item(dashboard: Dashboard) -> None:
    dashboard.open("/item/IT-0000007")
    expect(dashboard.page).to_have_url(re.compile(r"#/items/IT-0000007$"))
    expect(dashboard.get("item-title")).to_contain_text("IT-0000007")
    dashboard.wait_for_charts()


# How much of an input's placeholder fits in its box (1: all of it).
PLACEHOLDER_FITS = """input => {
  const style = getComputedStyle(input);
  const canvas = document.createElement("canvas").getContext("2d");
  canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return room / canvas.measureText(input.placeholder).width;
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1366x768", "768x1024"])
def test_search_placeholders_are_not_cut_off(dashboard: Dashboard, viewport: ViewportSize) -> None:
    dashboard.page.set_viewport_size(viewport)
    dashboard.open_overview()
    assert dashboard.get("search-input").evaluate(PLACEHOLDER_FITS) >= 1
    dashboard.open_items()
    assert dashboard.get("items-search").evaluate(PLACEHOLDER_FITS) >= 1


# --- accessibility and layout --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("/", {"nav-overview", "nav-items", "nav-revisions", "nav-data", "nav-admin", "filter-category", "filter-site", "search-input"}),
        ("/admin", {"nav-admin", "upload-input", "upload-button", "refresh-button", "rollback-select", "rollback-button"}),
    ],
    ids=["overview", "admin"],
)  # fmt: skip
def test_keyboard_reaches_nav_and_controls_with_a_visible_focus(
    dashboard: Dashboard, route: str, expected: set[str]
) -> None:
    if route == "/admin":
        dashboard.open_admin()
    else:
        dashboard.open_overview()
    dashboard.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    focused = tab_through(dashboard.page, 40)
    reached = {element["testid"] for element in focused}
    assert expected <= reached, f"Tab never reaches {expected - reached}"
    unmarked = [element for element in focused if not element["ring"]]
    assert not unmarked, f"focused without a visible outline or ring: {unmarked}"


def test_keyboard_follows_a_nav_link(dashboard: Dashboard) -> None:
    dashboard.open_overview()
    dashboard.get("nav-data").focus()
    dashboard.page.keyboard.press("Enter")
    expect(dashboard.get("current-version")).to_be_visible()


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1366x768", "768x1024"])
def test_no_page_scrolls_sideways(
    dashboard: Dashboard, riskiest_item: str, viewport: ViewportSize
) -> None:
    dashboard.page.set_viewport_size(viewport)
    for name in every_page(dashboard, riskiest_item):
        scroll_width, inner_width = dashboard.page.evaluate(OVERFLOW)
        assert scroll_width <= inner_width, f"{name}: {scroll_width} px wide in {inner_width} px"


def test_no_page_offers_ml(dashboard: Dashboard, riskiest_item: str) -> None:
    for name in every_page(dashboard, riskiest_item):
        words = sorted({m.group(0) for m in ML_WORDS.finditer(dashboard.page.evaluate(READABLE))})
        assert not words, f"{name} page says {words}"


# --- what the page loads -------------------------------------------------------------------------


def test_js_and_css_fit_the_budget(built_dashboard: Path) -> None:
    sizes = gzipped_sizes(built_dashboard)
    assert sizes, f"no .js or .css file under {built_dashboard}"
    total = sum(sizes.values())
    assert total <= JS_CSS_BUDGET, f"{total:,} bytes (gzip -9) > {JS_CSS_BUDGET:,}: {sizes}"


def test_page_loads_only_the_built_assets(
    dashboard: Dashboard, built_dashboard: Path, riskiest_item: str
) -> None:
    parser = AssetLinks()
    parser.feed((built_dashboard / "index.html").read_text())
    missing = sorted(
        link for link in parser.links if not (built_dashboard / dist_path(link)).is_file()
    )
    assert not missing, f"index.html links to files dist/ does not have: {missing}"

    loaded: list[Request] = []
    dashboard.page.on("request", lambda request: loaded.append(request))  # noqa: PLW0108
    failed: list[str] = []
    dashboard.page.on("requestfailed", lambda request: failed.append(request.url))

    def note_error(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    dashboard.page.on("response", note_error)
    for _ in every_page(dashboard, riskiest_item):
        pass
    code = {
        dist_path(urlsplit(request.url).path)
        for request in loaded
        if request.resource_type in {"script", "stylesheet"}
    }
    assert code, "the page loaded no JS or CSS"
    assert code <= set(gzipped_sizes(built_dashboard)), f"JS/CSS not from dist/: {code}"
    linked = {dist_path(link) for link in parser.links if link.endswith((".js", ".css"))}
    assert linked <= code, f"index.html links {linked - code} but the page never loaded them"
    assert not failed, f"requests that failed while visiting every page: {failed}"


def test_no_request_leaves_the_server(
    dashboard: Dashboard, riskiest_item: str, request_log: RequestLog
) -> None:
    """Every test page's requests so far, and this test's own visit of every page."""
    for _ in every_page(dashboard, riskiest_item):
        pass
    assert request_log.urls
    assert not request_log.foreign(), f"requests to other origins: {request_log.foreign()}"
