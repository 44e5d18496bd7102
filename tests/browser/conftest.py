"""Browser fixtures: Debian's Chromium, driven by Playwright, against the real server.

One Chromium runs for the session; each test gets a fresh context (no cache, no storage) and a
page whose every request is logged, so test_dashboard can prove that the dashboard talks to its
own server only. The servers are `appliance serve` (Granian, 2 workers) over stores made by the
CLI, exactly as in the integration tests.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from appliance.packs.pack_layout import table_member
from server.app import DASHBOARD_DIR
from tests.browser.dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PAGE_TIMEOUT_MS,
    Dashboard,
    RequestLog,
)
from tests.conftest import BIN, Signer, import_into, make_pack, run
from tests.integration.live_server import VIEWER_TOKEN, LiveServer, live_server
from tests.packs import ForgedPack, Member

HERE = Path(__file__).parent
REPO = HERE.parents[1]
LONG_NAME_TAIL = (
    " with the long name a site gives a part: outdoor cabinet, 48 V, IP65, for macro sites"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip every browser test when Debian's Chromium is not installed."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing (apt-get install chromium; CI installs it). "
        "These tests never use a browser downloaded by Playwright."
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built_dashboard() -> Path:
    """server/frontend/dist, which the server serves at / only when index.html exists."""
    if not (DASHBOARD_DIR / "index.html").is_file():
        pytest.fail(f"{DASHBOARD_DIR / 'index.html'} is missing: build the dashboard first")
    return DASHBOARD_DIR


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """The one Playwright of the session (the sync API allows one at a time)."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, with every background service that could call out turned off."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def request_log() -> RequestLog:
    """The URLs every test page requested, and the origins of the servers the tests started."""
    return RequestLog()


@pytest.fixture
def page(browser: Browser, request_log: RequestLog) -> Iterator[Page]:
    """A page in a fresh 1366x768 context; each of its requests goes into `request_log`."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    tab = context.new_page()
    tab.on("request", lambda request: request_log.urls.append(request.url))
    yield tab
    context.close()


def started(
    data_dir: Path, signer: Signer, request_log: RequestLog, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """`appliance serve` on `data_dir` with 2 workers, its origin registered as ours."""
    with live_server(data_dir, signer.allowed_signers, workers=2, env=env) as running:
        request_log.origins.add(running.base)
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    good_pack: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """The server the read-only tests share: good_pack imported as v0001."""
    data_dir = tmp_path_factory.mktemp("store") / "data"
    import_into(data_dir, good_pack, signer)
    yield from started(data_dir, signer, request_log)


@pytest.fixture(scope="module")
def two_versions(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    good_pack: Path,
    newer_pack: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """good_pack as v0001, then newer_pack (a day later, other figures) as v0002, served now."""
    data_dir = tmp_path_factory.mktemp("two") / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    yield from started(data_dir, signer, request_log)


@pytest.fixture
def fresh_server(
    tmp_path: Path,
    built_dashboard: Path,
    good_pack: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """A server of its own for a test that changes the data: good_pack imported as v0001."""
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    yield from started(data_dir, signer, request_log)


@pytest.fixture(scope="module")
def viewer_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    good_pack: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """A server whose reads need the viewer (or the admin) token: good_pack imported as v0001."""
    data_dir = tmp_path_factory.mktemp("viewer") / "data"
    import_into(data_dir, good_pack, signer)
    env = {"APPLIANCE_VIEWER_TOKEN": VIEWER_TOKEN}
    yield from started(data_dir, signer, request_log, env)


@pytest.fixture(scope="module")
def empty_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """A server over a store nothing was imported into yet (the tests only read it)."""
    data_dir = tmp_path_factory.mktemp("empty") / "data"
    data_dir.mkdir()  # as the installer makes it: serve refuses a data dir that is not there
    yield from started(data_dir, signer, request_log)


@pytest.fixture
def fresh_empty_server(
    tmp_path: Path, built_dashboard: Path, signer: Signer, request_log: RequestLog
) -> Iterator[LiveServer]:
    """A server of its own over an empty store, for a test that imports into it."""
    (tmp_path / "data").mkdir()  # as the installer makes it
    yield from started(tmp_path / "data", signer, request_log)


@pytest.fixture
def dashboard(page: Page, server: LiveServer) -> Dashboard:
    """The page, on the shared read-only server."""
    return Dashboard(page, server)


def good_parts(good_pack: Path) -> ForgedPack:
    """good_pack's parts under a fresh pack_id, so a refusal is never a replay by accident."""
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = str(uuid.uuid4())
    return parts


@pytest.fixture
def pack_signed_by_untrusted_key(tmp_path: Path, good_pack: Path, untrusted_signer: Signer) -> Path:
    return good_parts(good_pack).write(tmp_path / "untrusted.pack", untrusted_signer.key)


@pytest.fixture
def pack_with_symlink(tmp_path: Path, good_pack: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    link = Member(name, type=tarfile.SYMTYPE, linkname="/etc/shadow")

    def replace_table_by_link(members: list[Member]) -> list[Member]:
        return [link if member.name == name else member for member in members]

    out = tmp_path / "symlink.pack"
    return good_parts(good_pack).write(out, signer.key, transform=replace_table_by_link)


@dataclass(frozen=True)
class DemoPack:
    """A pack made by `make demo-pack` (make demo's own), and the allowed_signers that trust it."""

    pack: Path
    signers: Path


def make_demo_pack(
    folder: Path, generated_at: datetime | None = None, key_of: Path | None = None
) -> DemoPack:
    """Run the Makefile's own `demo-pack` recipe into `folder` (generated now, or at
    `generated_at`; signed with the key in `key_of` when given). The venv is this one and is
    never reinstalled: `-o` marks it up to date."""
    if shutil.which("make") is None:
        pytest.fail("make is needed to build make demo's pack (apt-get install make)")
    folder.mkdir(parents=True, exist_ok=True)
    if key_of is not None:
        for name in ("signing-key", "signing-key.pub", "allowed_signers"):
            shutil.copy2(key_of / name, folder / name)
    argv = [
        "make",
        "-s",
        "-C",
        str(REPO),
        "-o",
        f"{BIN}/.installed",
        f"BIN={BIN}",
        f"DEMO={folder}",
    ]
    if generated_at is not None:
        argv.append(f"DEMO_GENERATED_AT={generated_at.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    done = subprocess.run([*argv, "demo-pack"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return DemoPack(folder / "demo.pack", folder / "allowed_signers")


def demo_store(data_dir: Path, *packs: DemoPack) -> None:
    """Import `packs` in turn as make demo does (`appliance import` on the command line)."""
    for made in packs:
        imported = run("appliance", "import", made.pack, "--data-dir", data_dir,
                       "--signers", made.signers)  # fmt: skip
        assert imported.returncode == 0, imported.stderr


@pytest.fixture(scope="session")
def demo_pack(tmp_path_factory: pytest.TempPathFactory) -> DemoPack:
    """The pack a first `make demo` imports: 200 items x 365 days, generated now."""
    return make_demo_pack(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    demo_pack: DemoPack,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """A server on make demo's data as a first `make demo` leaves it: v0001, imported on the
    command line."""
    data_dir = tmp_path_factory.mktemp("demo-store") / "data"
    demo_store(data_dir, demo_pack)
    with live_server(data_dir, demo_pack.signers, workers=2) as running:
        request_log.origins.add(running.base)
        yield running


@pytest.fixture(scope="session")
def demo_next_day_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    demo_pack: DemoPack,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """make demo run on two days: yesterday's pack as v0001, today's (demo_pack) as v0002."""
    yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    folder = demo_pack.pack.parent
    earlier = make_demo_pack(tmp_path_factory.mktemp("demo-yesterday"), yesterday, key_of=folder)
    data_dir = tmp_path_factory.mktemp("demo-two") / "data"
    demo_store(data_dir, earlier, demo_pack)
    with live_server(data_dir, demo_pack.signers, workers=2) as running:
        request_log.origins.add(running.base)
        yield running


@pytest.fixture(scope="session")
def long_names(tmp_path_factory: pytest.TempPathFactory, demo_tables: Path) -> Path:
    """The small demo tables with every item name made long (100-odd characters, the kind a
    site's catalogue has), under 200, the registry's limit."""
    folder = tmp_path_factory.mktemp("long-names") / "tables"
    shutil.copytree(demo_tables, folder)
    path = next(folder.rglob("dim_item.parquet"))
    items = pq.read_table(path)
    names = pc.binary_join_element_wise(items.column("name"), LONG_NAME_TAIL, "")
    column = items.schema.get_field_index("name")
    pq.write_table(items.set_column(column, items.schema.field(column), names), path)
    return folder


@pytest.fixture(scope="module")
def long_names_server(
    tmp_path_factory: pytest.TempPathFactory,
    built_dashboard: Path,
    long_names: Path,
    signer: Signer,
    request_log: RequestLog,
) -> Iterator[LiveServer]:
    """A server whose items have long names."""
    pack = make_pack(long_names, signer, tmp_path_factory.mktemp("long-pack") / "long.pack")
    data_dir = tmp_path_factory.mktemp("long-store") / "data"
    import_into(data_dir, pack, signer)
    yield from started(data_dir, signer, request_log)
