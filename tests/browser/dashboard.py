"""The dashboard as the browser tests see it: its built files, its pages, what a page requested.

The pages are found through the DOM contract the dashboard implements (`data-testid` attributes,
hash routes `#/`, `#/items`, `#/items/<id>`, `#/revisions`, `#/data`, `#/admin`), never through CSS classes or layout.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, ViewportSize, expect

from server.app import DASHBOARD_DIR
from tests.integration.live_server import ADMIN_TOKEN, LiveServer

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright's own browser download is never used
NODE_NAME = "appliance.test"  # the node as the site knows it: a name that is not loopback
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-quic",
    f"--host-resolver-rules=MAP {NODE_NAME} 127.0.0.1",  # the name resolves to the test servers
)
DESKTOP: ViewportSize = {"width": 1366, "height": 768}
TABLET: ViewportSize = {"width": 768, "height": 1024}
JS_CSS_BUDGET = 100_000  # bytes of gzip -9 over every .js and .css file the dashboard ships
POLL_SECONDS = 1  # `?poll=1`: how often the page checks /api/v1/data/current in tests (15 s else)
PAGE_TIMEOUT_MS = 10_000
NON_EMPTY = re.compile(r"\S")


def gzipped_sizes(dist: Path = DASHBOARD_DIR) -> dict[str, int]:
    """The gzip -9 size of every .js and .css file under `dist`, by path relative to it."""
    return {
        path.relative_to(dist).as_posix(): len(gzip.compress(path.read_bytes(), compresslevel=9))
        for path in sorted(dist.rglob("*"))
        if path.suffix in {".js", ".css"} and path.is_file()
    }


def origin(url: str) -> str:
    """scheme://host:port of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class RequestLog:
    """Every URL the test pages requested, and the origins of the servers they were pointed at."""

    origins: set[str] = field(default_factory=set)
    urls: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """The requested URLs that went anywhere but one of our servers (data: and blob: are local)."""
        return [
            url
            for url in self.urls
            if not url.startswith(("data:", "blob:")) and origin(url) not in self.origins
        ]


@dataclass
class Dashboard:
    """One browser page on one live server, driven through the DOM contract."""

    page: Page
    server: LiveServer
    at: str | None = None  # the origin to open the dashboard at, if not the server's own

    def get(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    def open(self, route: str = "/", *, poll: int | None = None) -> None:
        """Load the dashboard at `#<route>` as a new document, so the route is its first page."""
        query = f"?poll={poll}" if poll is not None else ""
        if self.page.url != "about:blank":
            # A goto that changes the hash only would stay in the same document.
            self.page.goto("about:blank")
        self.page.goto(f"{self.at or self.server.base}/{query}#{route}")

    def open_overview(self, *, poll: int | None = None) -> None:
        self.open("/", poll=poll)
        expect(self.get("kpi-card").first).to_be_visible()
        expect(self.get("risk-row").first).to_be_attached()

    def open_items(self, query: str = "") -> None:
        """The items page, with `query` (`sort=cover&category=Radio`) in its URL."""
        self.open(f"/items{'?' + query if query else ''}")
        expect(self.get("items-count")).to_be_visible()

    def open_item(self, item_id: str) -> None:
        self.open(f"/items/{item_id}")
        self.wait_for_charts()

    def wait_for_charts(self) -> None:
        for chart in ("forecast-chart", "inventory-chart"):
            expect(self.get(chart)).to_have_attribute("data-points", NON_EMPTY)

    def open_data(self) -> None:
        self.open("/data")
        expect(self.get("current-version")).to_be_visible()

    def open_admin(self, token: str | None = ADMIN_TOKEN) -> None:
        """The admin page, signed in with `token` unless it is None or this tab already signed in."""
        self.open("/admin")
        gate_or_panel = self.page.locator(
            '[data-testid="admin-token-input"], [data-testid="admin-panel"]'
        )
        expect(gate_or_panel.first).to_be_visible()
        if token is not None and self.get("admin-token-input").count():
            self.enter_token(token)
            expect(self.get("admin-panel")).to_be_visible()

    def enter_token(self, token: str) -> None:
        self.get("admin-token-input").fill(token)
        self.get("admin-token-submit").click()

    def error_state(self, kind: str) -> Locator:
        return self.page.locator(f'[data-testid="error-state"][data-kind="{kind}"]')

    def badge(self) -> Locator:
        return self.get("version-badge")
