"""The admin token and the network: plain HTTP to a named node, loopback, and HTTPS.

Issue 14, point 5: with TLS off, the admin page warns before a token is sent over plain HTTP to
an address other than loopback, and sends nothing until the admin confirms. With TLS on, Chromium
trusts the certificate `appliance tls self-signed` makes the way a Linux admin sets it up (an NSS
database in the user's home, `certutil -A -t "P,,"`), without --ignore-certificate-errors, and the
admin page has no warning. The node is `appliance.test`, mapped to 127.0.0.1 inside Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Error, Page, Playwright, Request, expect

from tests.browser.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    NODE_NAME,
    PAGE_TIMEOUT_MS,
    Dashboard,
    RequestLog,
)
from tests.conftest import Signer, import_into, run
from tests.integration.live_server import ADMIN_TOKEN, LiveServer, live_server


def carrying(page: Page, secret: str) -> list[str]:
    """The URLs of the page's requests, from now on, that carry `secret` in a header."""
    sent: list[str] = []

    def note(request: Request) -> None:
        if any(secret in value for value in request.headers.values()):
            sent.append(request.url)

    page.on("request", note)
    return sent


def named(server: LiveServer) -> str:
    """The server's origin under the node's name, as the site's browsers reach it."""
    return f"{urlsplit(server.base).scheme}://{NODE_NAME}:{server.port}"


def admin_requests(server: LiveServer) -> list[str]:
    """The paths of the POST requests the server has logged so far."""
    lines = [json.loads(line) for line in server.log_lines if line.startswith("{")]
    return [e["path"] for e in lines if e.get("msg") == "request" and e.get("method") == "POST"]


# --- plain HTTP ----------------------------------------------------------------------------------


def test_plain_http_to_a_named_node_warns_and_sends_no_token_until_confirmed(
    page: Page, fresh_server: LiveServer, request_log: RequestLog
) -> None:
    """On a server of its own, so that its log holds this test's requests only."""
    at = named(fresh_server)
    request_log.origins.add(at)
    dashboard = Dashboard(page, fresh_server, at=at)
    sent = carrying(page, ADMIN_TOKEN)
    dashboard.open_admin(token=None)

    warning = dashboard.get("plain-http-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("not encrypted")
    expect(warning).to_contain_text(f"{NODE_NAME}:{fresh_server.port}")
    expect(warning).to_contain_text("HTTPS")
    expect(dashboard.get("admin-token-input")).to_have_attribute(
        "aria-describedby", "plain-http-warning admin-token-help"
    )

    dashboard.enter_token(ADMIN_TOKEN)
    expect(dashboard.get("admin-message")).to_contain_text("The token was not sent")
    expect(dashboard.get("plain-http-confirm")).to_be_focused()
    dashboard.get("admin-token-input").press("Enter")  # the keyboard's way: refused the same
    expect(dashboard.get("admin-panel")).to_have_count(0)
    assert sent == [], f"the token went out before the admin confirmed: {sent}"
    assert admin_requests(fresh_server) == []
    assert page.evaluate("() => sessionStorage.getItem('adminToken')") is None

    dashboard.get("plain-http-confirm").check()
    dashboard.get("admin-token-submit").click()
    expect(dashboard.get("admin-panel")).to_be_visible()
    assert sent, "no request carried the token after the admin confirmed"
    assert all(url.startswith(f"{at}/") for url in sent), sent
    deadline = time.monotonic() + 5  # the server's log line follows its answer
    while not admin_requests(fresh_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admin_requests(fresh_server) == ["/api/v1/data/refresh"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_http_signs_in_without_a_warning(
    page: Page, server: LiveServer, request_log: RequestLog, host: str
) -> None:
    at = f"http://{host}:{server.port}"
    request_log.origins.add(at)
    dashboard = Dashboard(page, server, at=at)
    dashboard.open_admin(token=None)
    expect(dashboard.get("admin-token-input")).to_be_visible()
    expect(dashboard.get("plain-http-warning")).to_have_count(0)
    dashboard.enter_token(ADMIN_TOKEN)
    expect(dashboard.get("admin-panel")).to_be_visible()


# --- HTTPS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The node's certificate and key, made as the installer makes them (localhost: the tests' client)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "tls.crt", folder / "tls.key"
    made = run(
        "appliance", "tls", "self-signed", "--cert", cert, "--key", key,
        "--name", NODE_NAME, "--name", "localhost", "--address", "127.0.0.1",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return cert, key


@pytest.fixture(scope="module")
def secure_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    good_pack: Path,
    signer: Signer,
    site_certificate: tuple[Path, Path],
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """good_pack imported as v0001 and served over HTTPS only."""
    data_dir = tmp_path_factory.mktemp("https") / "data"
    import_into(data_dir, good_pack, signer)
    cert, key = site_certificate
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    with live_server(data_dir, signer.allowed_signers, workers=1, args=tls) as running:
        request_log.origins.add(named(running))
        yield running


@pytest.fixture(scope="module")
def trusting_home(
    tmp_path_factory: pytest.TempPathFactory, site_certificate: tuple[Path, Path]
) -> Path:
    """A home folder whose NSS database trusts the node's certificate, as a Linux admin adds it."""
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.skip("certutil is missing (apt-get install libnss3-tools; CI installs it)")
    home = tmp_path_factory.mktemp("home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for argv in (
        ["-N", "--empty-password"],
        ["-A", "-t", "P,,", "-n", "appliance", "-i", str(site_certificate[0])],
    ):
        done = subprocess.run(
            [certutil, "-d", f"sql:{nssdb}", *argv], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    return home


@pytest.fixture(scope="module")
def trusting_browser(playwright: Playwright, trusting_home: Path) -> Iterator[Browser]:
    """Chromium with that home: the arguments of every browser test, no certificate override."""
    assert not [arg for arg in CHROMIUM_ARGS if "certificate" in arg], CHROMIUM_ARGS
    env: dict[str, str | float | bool] = {**os.environ, "HOME": str(trusting_home)}
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env
    )
    yield chromium
    chromium.close()


@pytest.fixture
def trusting_page(trusting_browser: Browser, request_log: RequestLog) -> Iterator[Page]:
    context = trusting_browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    tab = context.new_page()
    tab.on("request", lambda request: request_log.urls.append(request.url))
    yield tab
    context.close()


def test_https_with_the_trusted_certificate_serves_the_dashboard_without_a_warning(
    trusting_page: Page, secure_server: LiveServer
) -> None:
    page, at = trusting_page, named(secure_server)
    answer = page.goto(f"{at}/")
    assert answer is not None
    assert answer.status == 200
    assert answer.headers["strict-transport-security"].startswith("max-age=")
    assert page.evaluate("() => [location.protocol, window.isSecureContext]") == ["https:", True]
    dashboard = Dashboard(page, secure_server, at=at)
    dashboard.open_overview()
    expect(dashboard.badge()).to_have_text("v0001")

    sent = carrying(page, ADMIN_TOKEN)
    dashboard.open_admin(token=None)
    expect(dashboard.get("admin-token-input")).to_be_visible()
    expect(dashboard.get("plain-http-warning")).to_have_count(0)
    dashboard.enter_token(ADMIN_TOKEN)
    expect(dashboard.get("admin-panel")).to_be_visible()
    assert sent
    assert all(url.startswith(f"{at}/") for url in sent), sent


def test_https_without_the_trust_is_refused(page: Page, secure_server: LiveServer) -> None:
    """The same certificate in a browser that does not trust it: the trust is what lets it in."""
    with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
        page.goto(f"{named(secure_server)}/")
