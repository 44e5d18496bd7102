"""Downloads on the dashboard: an item's rows on its page, every kept version's tables on the
data page, each the node's export (`GET /api/v1/export/...`), in Chromium against the real server.

Issue 17, part 1: "the item page's CSV button and the data page use them; the data page offers
each table of each kept version". What the browser saves is the export's bytes, with the
server's file name; the numbers are the API's. A node that asks for a viewer token gets the
file too: the page fetches it with the token, which a link cannot carry.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from playwright.sync_api import Download, Locator, Page, expect

from tests.browser.dashboard import Dashboard
from tests.integration.live_server import VIEWER_TOKEN, LiveServer

TABLES = ["dim_item", "fact_forecast", "fact_inventory", "fact_metrics"]


def api(server: LiveServer, path: str, **params: str | int) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def export(server: LiveServer, path: str, token: str | None = None) -> tuple[bytes, str]:
    """The export's bytes and file name, fetched directly (not through the browser)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = server.get(path, headers=headers)
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    return response.content, disposition.split('filename="')[1].rstrip('"')


def saved(page: Page, link: Locator) -> Download:
    with page.expect_download() as download:
        link.click()
    return download.value


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_an_items_csv_and_parquet_are_its_exported_rows(
    dashboard: Dashboard, server: LiveServer
) -> None:
    item = api(server, "/api/v1/items", sort="risk", limit=1)["items"][0]["item_id"]
    series = api(server, f"/api/v1/items/{item}/timeseries")
    inventory = api(server, f"/api/v1/inventory/{item}")
    dashboard.open_item(item)
    csvs = dashboard.get("csv-download")
    expect(csvs).to_have_count(2)
    for link, table, days in (
        (csvs.nth(0), "fact_forecast", series["dates"]),
        (csvs.nth(1), "fact_inventory", inventory["dates"]),
    ):
        assert link.get_attribute("data-table") == table
        download = saved(dashboard.page, link)
        body, name = export(server, f"/api/v1/export/{table}.csv?item={item}&version=v0001")
        assert download.suggested_filename == name
        assert Path(download.path()).read_bytes() == body
        rows = rows_of(body)
        assert [row["date"] for row in rows] == days
        assert {row["item_id"] for row in rows} == {item}
    forecast = rows_of(Path(saved(dashboard.page, csvs.nth(0)).path()).read_bytes())
    assert [float(row["yhat"]) for row in forecast] == series["yhat"]  # the plotted numbers

    parquet = dashboard.page.locator('[data-testid="parquet-download"][data-table="fact_forecast"]')
    table = pq.read_table(saved(dashboard.page, parquet).path())
    assert table.column("yhat").to_pylist() == series["yhat"]


def test_the_data_page_offers_each_table_of_each_kept_version(
    page: Page, two_versions: LiveServer
) -> None:
    versions = api(two_versions, "/api/v1/data/versions")
    kept = [v["version"] for v in versions["versions"]]
    assert kept == ["v0001", "v0002"]
    dashboard = Dashboard(page, two_versions)
    dashboard.open_data()
    rows = dashboard.get("export-row")
    expect(rows).to_have_count(len(kept) * len(TABLES))
    offered = [
        (row.get_attribute("data-version"), row.get_attribute("data-table")) for row in rows.all()
    ]
    assert offered == [(v, t) for v in reversed(kept) for t in TABLES]  # newest version first
    listed = {(e["version"], t["table"]): t for e in versions["exports"] for t in e["tables"]}
    for row in rows.all():
        table = listed[(row.get_attribute("data-version"), row.get_attribute("data-table"))]
        expect(row).to_contain_text(f"{table['rows']:,}")

    # The older version's forecast table, whole: the export's bytes, as many rows as it has.
    link = dashboard.page.locator(
        '[data-testid="export-link"][data-version="v0001"][data-table="fact_forecast"][data-format="csv"]'
    )
    download = saved(page, link)
    body, name = export(two_versions, listed[("v0001", "fact_forecast")]["csv"])
    assert download.suggested_filename == name
    assert Path(download.path()).read_bytes() == body
    assert len(rows_of(body)) == listed[("v0001", "fact_forecast")]["rows"]


def test_a_node_that_asks_for_a_token_still_gives_the_files(
    page: Page, viewer_server: LiveServer
) -> None:
    """Tokens never go in a URL: the page fetches the export with the token and saves it."""
    refused = viewer_server.get("/api/v1/export/dim_item.csv")
    assert refused.status_code == 401  # a plain link would get this
    dashboard = Dashboard(page, viewer_server)
    dashboard.open("/data")
    gate = dashboard.error_state("unauthorized")
    gate.get_by_label("Access token").fill(VIEWER_TOKEN)
    gate.get_by_role("button", name="Continue").click()
    expect(dashboard.get("current-version")).to_be_visible()
    link = dashboard.page.locator(
        '[data-testid="export-link"][data-table="dim_item"][data-format="csv"]'
    )
    download = saved(page, link)
    body, name = export(viewer_server, "/api/v1/export/dim_item.csv?version=v0001", VIEWER_TOKEN)
    assert download.suggested_filename == name
    assert Path(download.path()).read_bytes() == body
    expect(dashboard.get("export-status").first).to_contain_text(f"Saved {name}")
