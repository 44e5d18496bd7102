"""Who did what, on the dashboard: the history names the actor of every change, and the admin
page says in words why a token is refused.

Issue 14, point 2: each line of the audit trail names who made the change (for the API the
token, its role and the client's address; for the command line user@host), at every width;
refreshes, token and trust changes have labels and details of their own. The trail here is made
the way a node's is: an import and token changes on the command line, a refresh through the API
with a named token; an import's fault and the two trust events as the importer and `appliance
trust apply` record them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, ViewportSize, expect

from appliance.access.tokens import TokenStore
from appliance.data.store import DataStore
from tests.browser.dashboard import DESKTOP, TABLET, Dashboard, RequestLog
from tests.conftest import Signer, import_into, run
from tests.integration.live_server import LiveServer, live_server

OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"
PHONE: ViewportSize = {"width": 390, "height": 844}
HONOURED_WITHIN = 1.0  # seconds until a running server honours a new or revoked token
LABELS = {
    "import": "Imported",
    "fault": "Import failed",
    "refresh": "Refreshed",
    "token-create": "Token made",
    "token-revoke": "Token revoked",
    "trust-update": "Trust updated",
    "trust-update-refused": "Trust refused",
}
TRUST_UPDATE = {
    "role": "pack",
    "serial": 2,
    "previous_serial": 1,
    "issued_at": "2026-12-01T09:00:00Z",
    "file": "pack-2.trust",
    "sha256": "0" * 64,
    "signer": "release@site",
    "fingerprint": "SHA256:5oX1bRdE3PqkzGjA0u7tKcWm9yLhN2sVfI4eTbQ8rZc",
    "added": ["SHA256:Jq4TTVbnQrJp8y4tLxHyjwU0pj3uJ1mK2FhV0n7oyDk"],
    "removed": [],
    "revoked": ["SHA256:xhccAmIlItJyXaSfgqEfPhr2EM3Czf25BbymKl5j1zo"],
    "unrevoked": [],
}
FAULT = {
    "pack_file": "/media/usb/results.pack",
    "reason": "disk-full",
    "message": "no space left on $APPLIANCE_DATA_DIR while importing results.pack",
}
TRUST_REFUSED = {
    "file": "pack-1.trust",
    "reason": "old-serial",
    "message": "pack-1.trust: serial 1 is older than the applied serial 2 of role pack",
}


@dataclass(frozen=True)
class Trail:
    """A server whose audit trail has every kind of change; the secret of its revoked token."""

    server: LiveServer
    revoked_secret: str


def token(data_dir: Path, *argv: str) -> str:
    """`appliance token ...` on `data_dir`, as an admin runs it; its stdout."""
    done = run("appliance", "token", *argv, "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def trail(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    good_pack: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[Trail]:
    data_dir = tmp_path_factory.mktemp("trail") / "data"
    import_into(data_dir, good_pack, signer)
    secret = token(data_dir, "create", "ops-alice", "--role", "admin")
    with live_server(data_dir, signer.allowed_signers) as running:
        request_log.origins.add(running.base)
        refreshed = running.post(
            "/api/v1/data/refresh", headers={"Authorization": f"Bearer {secret}"}
        )
        assert refreshed.status_code == 200, refreshed.text
        token(data_dir, "revoke", "ops-alice")
        store = DataStore(data_dir)
        store.record("fault", **FAULT)
        store.record("trust-update", **TRUST_UPDATE)
        store.record("trust-update-refused", **TRUST_REFUSED)
        time.sleep(HONOURED_WITHIN)
        yield Trail(running, secret)


def history(server: LiveServer) -> list[dict[str, Any]]:
    """The audit trail as the API serves it, newest first (as the data page shows it)."""
    answer = server.get("/api/v1/data/versions")
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()["history"]))


def who(event: dict[str, Any]) -> list[str]:
    """What the page must say of the event's actor: the token, role and client, or user@host."""
    by = event["by"]
    if by["via"] == "api":
        return [by["token"], by["role"], by["client"]]
    return [f"{by['user']}@{by['host']}"]


def row_of(dashboard: Dashboard, event: str) -> Locator:
    return dashboard.page.locator(f'[data-testid="history-row"][data-event="{event}"]')


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET, PHONE], ids=["1366", "768", "390"])
def test_history_names_who_made_each_change_at_every_width(
    page: Page, trail: Trail, viewport: ViewportSize
) -> None:
    events = history(trail.server)
    assert {e["event"] for e in events} == set(LABELS)
    refresh = next(e for e in events if e["event"] == "refresh")
    assert refresh["by"]["token"] == "ops-alice"
    page.set_viewport_size(viewport)
    dashboard = Dashboard(page, trail.server)
    dashboard.open_data()
    expect(page.get_by_role("table", name="History of changes")).to_be_visible()
    rows = dashboard.get("history-row")
    expect(rows).to_have_count(len(events))
    for row, event in zip(rows.all(), events, strict=True):
        actor = row.get_by_test_id("history-actor")
        expect(actor).to_be_visible()
        expect(actor).to_have_attribute("data-via", event["by"]["via"])
        for text in who(event):
            expect(actor).to_contain_text(text)
        # Within the part of the table on screen: no sideways scrolling needed to read it.
        cell, table = actor.bounding_box(), row.locator("xpath=ancestor::table/..").bounding_box()
        assert cell is not None and table is not None
        assert (
            table["x"] <= cell["x"] and cell["x"] + cell["width"] <= table["x"] + table["width"]
        ), f"{event['event']}: the actor is outside the visible table at {viewport['width']} px"
    scroll_width, inner_width = page.evaluate(OVERFLOW)
    assert scroll_width <= inner_width, f"{scroll_width} px wide in {inner_width} px"


def test_history_labels_and_details_every_kind_of_change(page: Page, trail: Trail) -> None:
    dashboard = Dashboard(page, trail.server)
    dashboard.open_data()
    for event, label in LABELS.items():
        expect(row_of(dashboard, event).get_by_test_id("history-event")).to_have_text(label)
    details = {
        "fault": ["disk-full", FAULT["message"], "A fault of the node", "results.pack"],
        "refresh": ["re-read the served version", "v0001"],
        "token-create": ["Made admin token", "ops-alice", "Does not expire"],
        "token-revoke": ["Revoked admin token", "ops-alice", "refused from now on"],
        "trust-update": [
            "serial 2 (was 1)",
            "result packs",
            "1 key added",
            "1 key revoked",
            "release@site",
            "pack-2.trust",
        ],
        "trust-update-refused": ["old-serial", TRUST_REFUSED["message"], "Nothing was changed"],
    }
    for event, texts in details.items():
        shown = row_of(dashboard, event).get_by_test_id("history-details")
        for text in texts:
            expect(shown).to_contain_text(text)


def test_admin_page_says_why_a_token_is_refused(page: Page, trail: Trail) -> None:
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    expired, _ = TokenStore(trail.server.data_dir).create(
        "ops-old", "admin", timedelta(days=1), "tests@here", long_ago
    )
    time.sleep(HONOURED_WITHIN)
    dashboard = Dashboard(page, trail.server)
    dashboard.open_admin(token=None)
    message = dashboard.get("admin-message")
    for secret, words in (
        (expired, ["has expired", "ops-old"]),
        (trail.revoked_secret, ["has been revoked", "ops-alice", "refused from now on"]),
        ("apl_" + "x" * 43, ["does not know that token", "copied whole"]),
    ):
        dashboard.enter_token(secret)
        for text in words:
            expect(message).to_contain_text(text)
        expect(message).to_have_attribute("data-state", "error")
        expect(dashboard.get("admin-panel")).to_have_count(0)
    assert page.evaluate("() => sessionStorage.getItem('adminToken')") is None
