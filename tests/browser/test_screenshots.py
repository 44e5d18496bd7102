"""The README's and the user guide's screenshots, taken on make demo's own data.

The packs are made by the Makefile's own recipe (`make demo-pack`: 200 items x 365 days,
generated now) and imported afresh as `make demo` does: one for a first `make demo`, and for
the revisions, `make demo` run on two days (yesterday's pack as v0001, today's as v0002).
`make screenshots` runs this test with UPDATE_SCREENSHOTS=1, which writes docs/images/*.png;
without it the pictures go to a temporary folder (the test still checks that every page renders
at the sizes the docs show).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from tests.browser.dashboard import DESKTOP, TABLET, Dashboard
from tests.integration.live_server import LiveServer

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "images"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def api(server: LiveServer, path: str, **params: str | int) -> Any:
    response = server.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """docs/images with UPDATE_SCREENSHOTS=1, else a temporary folder."""
    return SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


def test_screenshots_of_every_page(
    page: Page, demo_server: LiveServer, demo_next_day_server: LiveServer, folder: Path
) -> None:
    dashboard = Dashboard(page, demo_server)
    riskiest = api(demo_server, "/api/v1/items", sort="risk", limit=1)["items"][0]["item_id"]
    assert api(demo_server, "/api/v1/items", limit=1)["total"] == 200  # make demo's 200 items
    shots: dict[str, ViewportSize] = {}

    def shot(name: str, viewport: ViewportSize = DESKTOP) -> None:
        page.set_viewport_size(viewport)
        page.mouse.move(0, 0)  # no hover state in the picture
        page.screenshot(path=folder / f"{name}.png", animations="disabled")
        shots[f"{name}.png"] = viewport

    dashboard.open_overview()
    shot("overview")
    dashboard.open_items()
    shot("items")
    dashboard.open_item(riskiest)
    shot("item")
    dashboard.open_data()
    shot("data")
    dashboard.open_admin()
    shot("admin")

    next_day = Dashboard(page, demo_next_day_server)
    next_day.open("/revisions")
    expect(next_day.get("revision-row").first).to_be_visible()
    shot("revisions")
    changed = api(demo_next_day_server, "/api/v1/revisions", limit=1)["items"][0]["item_id"]
    next_day.open(f"/items/{changed}?against=v0001")
    next_day.wait_for_charts()
    expect(next_day.get("forecast-chart")).to_have_attribute("data-other-shown", "true")
    next_day.get("forecast-chart").scroll_into_view_if_needed()
    shot("item-revision")
    page.set_viewport_size(TABLET)
    dashboard.open_overview()
    expect(dashboard.get("risk-row").first).to_be_visible()
    shot("overview-tablet", TABLET)
    for file, viewport in shots.items():
        assert png_size(folder / file) == (viewport["width"], viewport["height"]), file
