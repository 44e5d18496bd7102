"""The HTTP API of the real server (`appliance serve`: Granian, two worker processes).

Issue 3, item 8: the contract of every endpoint (bodies decoded into the Structs of
server/schemas.py), version headers, ETags and 304s, one error envelope, security headers, auth,
rate limits and metrics shared across workers, uploads, hostile inputs, logs, and an OpenAPI
document without any ML route.

Each server runs on its own store holding good_pack (30 items x 40 days, generated
2026-11-01T06:00Z) as v0001, and starts once per module. Requests go out on fresh connections so
that they spread over both workers; the server's JSON log lines tell which worker answered.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx
import msgspec
import pytest

from appliance.packs.pack_layout import table_member
from server.schemas import (
    DataVersion,
    DataVersions,
    ErrorBody,
    ErrorDetail,
    ForecastSummary,
    Health,
    ImportResult,
    Inventory,
    ItemsPage,
    ItemSummary,
    Timeseries,
)
from tests.conftest import SMALL_DAYS, SMALL_ITEMS, Signer, run, versions_json
from tests.integration.live_server import ADMIN_TOKEN, VIEWER_TOKEN, LiveServer, live_server
from tests.packs import ForgedPack, Member

FIRST_VERSION = "v0001"
ITEM = "IT-0000001"
UNKNOWN_ITEM = "IT-9999999"
LAST_OBSERVED_DAY = date(2026, 11, 1)
DATASET_ID = "demo-telecom-spares"
MODEL_VERSION = "demo-ensemble-1.0"
TRACE = (FIRST_VERSION, DATASET_ID, MODEL_VERSION)
AT_RISK = 0.5
WRONG_TOKEN = "wrong-token-for-tests-9876543210"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_WAIT = 1.5  # workers write their metrics snapshots every second
RATE_LIMIT, ADMIN_RATE_LIMIT = 20, 5
RATE_WINDOW = 60.0
T = TypeVar("T")

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    414: "uri_too_long",
    422: "pack_rejected",
    429: "rate_limited",
    503: "unavailable",
}
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "content-security-policy",
    "referrer-policy",
)
DOCUMENTED_PATHS = {
    "/api/v1/items",
    "/api/v1/items/{item_id}/timeseries",
    "/api/v1/forecasts/summary",
    "/api/v1/inventory/{item_id}",
    "/api/v1/data/current",
    "/api/v1/data/versions",
    "/api/v1/data/refresh",
    "/api/v1/data/packs",
    "/api/v1/data/rollback",
    "/api/v1/revisions",
    "/api/v1/items/{item_id}/revision",
    "/api/v1/export/{file_name}",
    "/health",
    "/health/live",
    "/health/ready",
    "/health/startup",
    "/metrics",
}
ML_WORDS = ("predict", "inference", "train", "retrain", "features", "model")
ADMIN_ENDPOINTS = ("/api/v1/data/refresh", "/api/v1/data/packs", "/api/v1/data/rollback")
HEALTH_ENDPOINTS = ("/health", "/health/live", "/health/ready", "/health/startup", "/metrics")
READ_ENDPOINTS = (
    "/api/v1/items",
    f"/api/v1/items/{ITEM}/timeseries",
    "/api/v1/forecasts/summary",
    f"/api/v1/inventory/{ITEM}",
    "/api/v1/data/current",
    "/api/v1/data/versions",
    "/api/v1/revisions",
    f"/api/v1/items/{ITEM}/revision",
)
DATA_ANSWERS = [
    pytest.param("/api/v1/items", id="items"),
    pytest.param("/api/v1/items?q=fiber&sort=risk&limit=3", id="items-search"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries", id="timeseries"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries?from=2026-10-30&to=2026-11-02", id="timeseries-range"),
    pytest.param("/api/v1/forecasts/summary", id="summary"),
    pytest.param("/api/v1/forecasts/summary?category=Radio", id="summary-category"),
    pytest.param(f"/api/v1/inventory/{ITEM}", id="inventory"),
    pytest.param("/api/v1/data/current", id="current"),
    pytest.param("/api/v1/revisions", id="revisions"),
    pytest.param(f"/api/v1/items/{ITEM}/revision", id="item-revision"),
]  # fmt: skip
PRECOMPUTED_ANSWERS = [f"/api/v1/items/{ITEM}/timeseries", f"/api/v1/inventory/{ITEM}"]


# --- helpers -------------------------------------------------------------------------------------


def store_with_good_pack(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Path:
    """A fresh data store whose current version v0001 is good_pack."""
    data_dir = tmp_path_factory.mktemp("store") / "data"
    signers = signer.allowed_signers
    run("appliance", "import", good_pack, "--data-dir", data_dir, "--signers", signers, check=True)
    return data_dir


def bearer(token: str) -> dict[str, str]:
    """An Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def decoded(response: httpx.Response, shape: type[T], status: int = 200) -> T:
    """The body of a `status` answer, decoded strictly into `shape`."""
    assert response.status_code == status, response.text
    return msgspec.json.decode(response.content, type=shape)


def error_of(response: httpx.Response, status: int) -> ErrorDetail:
    """The envelope of an error answer, checked: status, code, one-line message, request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = msgspec.json.decode(response.content, type=ErrorBody).error
    assert detail.status == status
    assert detail.code == ERROR_CODES[status]
    assert detail.message.strip()
    assert "\n" not in detail.message
    assert detail.request_id
    assert detail.request_id == response.headers["x-request-id"]
    return detail


def log_records(server: LiveServer) -> list[dict[str, Any]]:
    """The server's JSON log lines so far, decoded (other stderr lines are progress)."""
    return [json.loads(line) for line in list(server.log_lines) if line.startswith("{")]


def request_log(server: LiveServer, response: httpx.Response, timeout: float = 5) -> dict[str, Any]:
    """The one log line of the request `response` answers (log lines arrive a little later)."""
    rid = response.headers["x-request-id"]
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            r for r in log_records(server) if r.get("request_id") == rid and r["msg"] == "request"
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(lines) == 1, f"{len(lines)} log lines for request {rid}"
    return lines[0]


def served_by(server: LiveServer, responses: Iterable[httpx.Response]) -> set[int]:
    """The pids of the workers that answered `responses`."""
    return {request_log(server, response)["worker"] for response in responses}


def get_raw(server: LiveServer, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """One GET on a fresh connection, with the body exactly as sent (not decompressed)."""
    with server.client() as client, client.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def all_items(server: LiveServer) -> list[ItemSummary]:
    """Every item, in one page."""
    return decoded(server.get("/api/v1/items?limit=500"), ItemsPage).items


def every_page(server: LiveServer, params: dict[str, str]) -> Iterator[ItemsPage]:
    """The pages of /api/v1/items with `params`, following `next` until it is null."""
    cursor: str | None = None
    for _ in range(SMALL_ITEMS + 1):
        page_params = params | ({"cursor": cursor} if cursor else {})
        page = decoded(server.get("/api/v1/items", params=page_params), ItemsPage)
        yield page
        if page.next is None:
            return
        cursor = page.next
    raise AssertionError("pagination never ended")


def every_worker_ready(server: LiveServer) -> None:
    """Each worker answers /health/ready with 200."""
    ready: set[int] = set()
    for _ in range(100):
        answer = server.get("/health/ready")
        assert answer.status_code == 200, answer.text
        ready.add(decoded(answer, Health).worker)
        if len(ready) == server.workers:
            return
    raise AssertionError(f"only workers {ready} answered")


def from_every_worker(server: LiveServer, path: str, at_least: int = 8) -> list[httpx.Response]:
    """GET `path` on fresh connections until every worker answered (and `at_least` times)."""
    answers: list[httpx.Response] = []
    while len(answers) < at_least or len(served_by(server, answers)) < server.workers:
        assert len(answers) < 60, f"only workers {served_by(server, answers)} answered"
        answers.append(server.get(path))
    return answers


def served_versions(server: LiveServer) -> set[str]:
    """The data versions the workers serve now (every worker asked several times)."""
    answers = from_every_worker(server, "/api/v1/items?limit=1")
    return {answer.headers["x-data-version"] for answer in answers}


def dim_item_rows(data_dir: Path) -> int:
    """Rows of dim_item in the current version's database, read beside the server."""
    con = duckdb.connect(str(data_dir / "current" / "data.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM dim_item").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def cursor_token(position: object) -> str:
    """A page token built by hand, encoded like the server's own."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def fresh_rate_window(needed: float = 5.0) -> None:
    """Wait for the next rate-limit window if this one ends within `needed` seconds."""
    left = RATE_WINDOW - time.time() % RATE_WINDOW
    if left < needed:
        time.sleep(left + 0.05)


SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition, each line checked against the format."""
    typed: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert name not in typed, f"two TYPE lines for {name}"
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        name, label_text, value = match.groups()
        labels = {m[1]: m[2] for m in LABEL.finditer(label_text or "")}
        assert ",".join(m[0] for m in LABEL.finditer(label_text or "")) == (label_text or ""), line
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or typed.get(family) == "histogram", f"{name} has no TYPE line"
        samples.append((name, labels, float(value)))
    return samples


def requests_total(samples: list[Sample], **match: str) -> float:
    """appliance_http_requests_total summed over every series whose labels include `match`."""
    return sum(
        value
        for name, labels, value in samples
        if name == "appliance_http_requests_total" and match.items() <= labels.items()
    )


# --- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """The server most tests read from: admin token set, reads open, no rate limits."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    with live_server(data_dir, signer.allowed_signers) as started:
        assert len(started.worker_pids()) == 2
        yield started


@pytest.fixture(scope="module")
def viewer_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server whose reads need the viewer (or the admin) token."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {"APPLIANCE_VIEWER_TOKEN": VIEWER_TOKEN}
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def server_without_admin_token(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server started with no admin token: its admin endpoints are disabled."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {"APPLIANCE_ADMIN_TOKEN": ""}
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def rate_limited_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server allowing 20 API requests and 5 admin requests a minute per client address."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {
        "APPLIANCE_RATE_LIMIT": str(RATE_LIMIT),
        "APPLIANCE_ADMIN_RATE_LIMIT": str(ADMIN_RATE_LIMIT),
    }
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        assert len(started.worker_pids()) == 2
        yield started


@pytest.fixture(scope="module")
def upload_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server taking uploads of at most 1 MiB, that only ever refuses them (v0001 stays)."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {"APPLIANCE_MAX_UPLOAD_MB": "1"}
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def publishing_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server whose store gets newer_pack uploaded (v0002) and rolled back and forth."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    with live_server(data_dir, signer.allowed_signers) as started:
        assert len(started.worker_pids()) == 2
        yield started


def upload(server: LiveServer, body: bytes) -> httpx.Response:
    """POST `body` as a pack, with the admin token."""
    headers = server.admin() | {"content-type": "application/octet-stream"}
    return server.post("/api/v1/data/packs", content=body, headers=headers)


@pytest.fixture(scope="module")
def newer_pack_upload(
    publishing_server: LiveServer, newer_pack: Path
) -> tuple[httpx.Response, float]:
    """newer_pack uploaded to publishing_server once: the answer and when it came (monotonic)."""
    answer = upload(publishing_server, newer_pack.read_bytes())
    return answer, time.monotonic()


# --- bad packs (each named for what is wrong with it) --------------------------------------------


@pytest.fixture
def good_parts(good_pack: Path) -> ForgedPack:
    """good_pack's parts under a fresh pack_id, so no refusal is a replay by accident."""
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = str(uuid.uuid4())
    return parts


@pytest.fixture
def pack_signed_by_untrusted_key(
    good_parts: ForgedPack, tmp_path: Path, untrusted_signer: Signer
) -> Path:
    return good_parts.write(tmp_path / "pack_signed_by_untrusted_key.pack", untrusted_signer.key)


@pytest.fixture
def pack_truncated_in_table(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    intact = good_parts.write(tmp_path / "intact.pack", signer.key)
    with tarfile.open(intact, "r:") as tar:
        table = tar.getmember(table_member("fact_forecast"))
    out = tmp_path / "pack_truncated_in_table.pack"
    out.write_bytes(intact.read_bytes()[: table.offset_data + table.size // 2])
    return out


@pytest.fixture
def pack_with_symlink(good_parts: ForgedPack, tmp_path: Path, signer: Signer) -> Path:
    name = table_member("fact_metrics")
    link = Member(name, type=tarfile.SYMTYPE, linkname="/etc/shadow")

    def replace_table(members: list[Member]) -> list[Member]:
        return [link if m.name == name else m for m in members]

    return good_parts.write(
        tmp_path / "pack_with_symlink.pack", signer.key, transform=replace_table
    )


@pytest.fixture
def pack_not_a_tar(tmp_path: Path) -> Path:
    out = tmp_path / "pack_not_a_tar.pack"
    out.write_bytes(b"this is not a tar archive\n" * 100)
    return out


# --- 1. the contract of every endpoint -----------------------------------------------------------


def test_items_list_every_item_with_its_traceability(server: LiveServer) -> None:
    page = decoded(server.get("/api/v1/items?limit=500"), ItemsPage)
    assert page.total == SMALL_ITEMS
    assert [item.item_id for item in page.items] == [f"IT-{n:07d}" for n in range(1, 31)]
    assert page.next is None
    assert (page.data.version, page.data.dataset_id, page.data.model_version) == TRACE
    assert page.data.generated_at == "2026-11-01T06:00:00Z"


@pytest.mark.parametrize("sort", ["item_id", "risk", "cover", "units"])
def test_paging_through_items_gives_each_item_once_in_order(server: LiveServer, sort: str) -> None:
    pages = list(every_page(server, {"sort": sort, "limit": "7"}))
    seen = [item for page in pages for item in page.items]
    assert len(pages) == 5
    assert {page.total for page in pages} == {SMALL_ITEMS}
    assert len(seen) == SMALL_ITEMS
    assert len({item.item_id for item in seen}) == SMALL_ITEMS
    orders: dict[str, Callable[[ItemSummary], tuple[Any, ...]]] = {
        "item_id": lambda item: (item.item_id,),
        "risk": lambda item: (-(item.max_stockout_risk or 0.0), item.item_id),
        "cover": lambda item: (
            item.days_of_cover_now is None,
            item.days_of_cover_now or 0.0,
            item.item_id,
        ),
        "units": lambda item: (-item.forecast_next_30d, item.item_id),
    }
    assert seen == sorted(seen, key=orders[sort])


def test_sort_by_risk_puts_the_highest_stockout_risk_first(server: LiveServer) -> None:
    items = decoded(server.get("/api/v1/items?sort=risk&limit=500"), ItemsPage).items
    risks = [item.max_stockout_risk or 0.0 for item in items]
    assert risks == sorted(risks, reverse=True)
    assert risks[0] > risks[-1]


def test_search_matches_ids_and_names_without_regard_to_case(server: LiveServer) -> None:
    everything = all_items(server)
    expected = [i for i in everything if "fiber" in i.name.lower() or "fiber" in i.item_id.lower()]
    page = decoded(server.get("/api/v1/items?q=FIBER&limit=500"), ItemsPage)
    assert expected, "the demo has fiber items"
    assert page.items == expected
    assert page.total == len(expected)
    by_id = decoded(server.get("/api/v1/items?q=it-000002&limit=500"), ItemsPage)
    assert [i.item_id for i in by_id.items] == [f"IT-00000{n}" for n in range(20, 30)]


@pytest.mark.parametrize("field", ["category", "site"])
def test_category_and_site_filters_keep_only_matching_items(server: LiveServer, field: str) -> None:
    everything = all_items(server)
    value = getattr(everything[0], field)
    page = decoded(server.get("/api/v1/items", params={field: value, "limit": 500}), ItemsPage)
    assert page.items == [item for item in everything if getattr(item, field) == value]
    assert 0 < page.total < SMALL_ITEMS


def test_filters_and_search_combine(server: LiveServer) -> None:
    everything = all_items(server)
    first = everything[0]
    params = {"category": first.category, "site": first.site, "q": "#0000", "limit": 500}
    page = decoded(server.get("/api/v1/items", params=params), ItemsPage)
    same_place = [i for i in everything if (i.category, i.site) == (first.category, first.site)]
    assert page.items == [i for i in same_place if "#0000" in i.name]
    assert first in page.items


def test_timeseries_has_every_day_with_its_interval_and_actuals_until_generation(
    server: LiveServer,
) -> None:
    series = decoded(server.get(f"/api/v1/items/{ITEM}/timeseries"), Timeseries)
    assert (series.item_id, series.version, series.dataset_id) == (ITEM, FIRST_VERSION, DATASET_ID)
    assert series.points == SMALL_DAYS
    columns = (series.dates, series.yhat, series.yhat_lower, series.yhat_upper, series.actual)
    assert {len(column) for column in columns} == {SMALL_DAYS}
    days = [date.fromisoformat(day) for day in series.dates]
    assert days == sorted(set(days))
    assert all(
        low <= mid <= high
        for low, mid, high in zip(series.yhat_lower, series.yhat, series.yhat_upper, strict=True)
    )
    horizon = [
        actual for day, actual in zip(days, series.actual, strict=True) if day > LAST_OBSERVED_DAY
    ]
    observed = [
        actual for day, actual in zip(days, series.actual, strict=True) if day <= LAST_OBSERVED_DAY
    ]
    assert horizon, "the series reaches past its generation day"
    assert all(actual is None for actual in horizon)
    assert observed
    assert all(actual is not None for actual in observed)


def test_timeseries_from_to_gives_only_those_days(server: LiveServer) -> None:
    whole = decoded(server.get(f"/api/v1/items/{ITEM}/timeseries"), Timeseries)
    path = f"/api/v1/items/{ITEM}/timeseries?from=2026-10-30&to=2026-11-02"
    part = decoded(server.get(path), Timeseries)
    assert part.dates == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
    assert part.points == 4
    start = whole.dates.index("2026-10-30")
    for column in ("yhat", "yhat_lower", "yhat_upper", "actual"):
        assert getattr(part, column) == getattr(whole, column)[start : start + 4]
    assert part.actual[-1] is None
    only_from = decoded(server.get(f"/api/v1/items/{ITEM}/timeseries?from=2026-11-10"), Timeseries)
    assert only_from.dates == [d for d in whole.dates if d >= "2026-11-10"]
    only_to = decoded(server.get(f"/api/v1/items/{ITEM}/timeseries?to=2026-10-04"), Timeseries)
    assert only_to.dates == [d for d in whole.dates if d <= "2026-10-04"]


def test_timeseries_with_from_after_to_is_a_bad_request(server: LiveServer) -> None:
    answer = server.get(f"/api/v1/items/{ITEM}/timeseries?from=2026-11-02&to=2026-11-01")
    assert "from" in error_of(answer, 400).message


@pytest.mark.parametrize(
    "path", [f"/api/v1/items/{UNKNOWN_ITEM}/timeseries", f"/api/v1/inventory/{UNKNOWN_ITEM}"]
)
def test_an_unknown_item_is_not_found(server: LiveServer, path: str) -> None:
    assert UNKNOWN_ITEM in error_of(server.get(path), 404).message


def test_summary_counts_every_item_and_carries_global_kpis(server: LiveServer) -> None:
    everything = all_items(server)
    summary = decoded(server.get("/api/v1/forecasts/summary"), ForecastSummary)
    assert (summary.category, summary.site, summary.kpi_scope) == (None, None, "global")
    assert summary.items == SMALL_ITEMS
    assert summary.items_at_risk == sum((i.max_stockout_risk or 0) >= AT_RISK for i in everything)
    assert summary.forecast_units_next_30d == pytest.approx(
        sum(i.forecast_next_30d for i in everything), abs=0.01
    )
    assert {kpi.metric for kpi in summary.kpis} >= {"mape", "wape", "bias", "coverage"}
    assert summary.categories == sorted({i.category for i in everything})
    assert summary.sites == sorted({i.site for i in everything})
    assert summary.data.version == FIRST_VERSION


@pytest.mark.parametrize(
    ("filters", "scope"),
    [
        ({"category": "Radio"}, "category"),
        ({"site": "REC-01"}, "site"),
        ({"category": "Radio", "site": "REC-01"}, "none"),
    ],
    ids=["category", "site", "both"],
)
def test_summary_follows_its_filters(
    server: LiveServer, filters: dict[str, str], scope: str
) -> None:
    everything = all_items(server)
    chosen = [i for i in everything if all(getattr(i, k) == v for k, v in filters.items())]
    summary = decoded(server.get("/api/v1/forecasts/summary", params=filters), ForecastSummary)
    assert (summary.category, summary.site) == (filters.get("category"), filters.get("site"))
    assert summary.kpi_scope == scope
    assert summary.items == len(chosen) > 0
    assert summary.items_at_risk == sum((i.max_stockout_risk or 0) >= AT_RISK for i in chosen)
    assert summary.forecast_units_next_30d == pytest.approx(
        sum(i.forecast_next_30d for i in chosen), abs=0.01
    )
    if scope == "none":
        assert summary.kpis == []
    else:
        assert summary.kpis


def test_inventory_projects_stock_over_the_horizon(server: LiveServer) -> None:
    inventory = decoded(server.get(f"/api/v1/inventory/{ITEM}"), Inventory)
    listed = next(i for i in all_items(server) if i.item_id == ITEM)
    assert (inventory.item_id, inventory.name, inventory.version) == (
        ITEM,
        listed.name,
        FIRST_VERSION,
    )
    columns = (inventory.dates, inventory.on_hand, inventory.days_of_cover, inventory.stockout_risk)
    assert len({len(column) for column in columns}) == 1
    assert inventory.dates
    assert inventory.dates == sorted(set(inventory.dates))
    assert all(day > LAST_OBSERVED_DAY.isoformat() for day in inventory.dates)
    assert inventory.max_stockout_risk == pytest.approx(max(inventory.stockout_risk))
    assert inventory.max_stockout_risk == listed.max_stockout_risk
    assert inventory.days_of_cover_now == listed.days_of_cover_now


def imported_via(server: LiveServer, vid: str) -> dict[str, Any]:
    """The `by` of the audit trail's import of `vid`: who imported it, and how (the CLI here)."""
    lines = (server.data_dir / "history.jsonl").read_text().splitlines()
    (event,) = [e for e in map(json.loads, lines) if e["event"] == "import" and e["version"] == vid]
    by: dict[str, Any] = event["by"]
    assert by["via"] == "cli"
    return by


def test_current_data_is_what_appliance_versions_reports(server: LiveServer) -> None:
    current = decoded(server.get("/api/v1/data/current"), DataVersion)
    report = json.loads(versions_json(server.data_dir))
    (entry,) = [v for v in report["versions"] if v["version"] == report["current"]]
    shown = msgspec.to_builtins(current)
    assert shown.pop("imported_via") == imported_via(server, FIRST_VERSION)
    assert shown == entry
    assert current.version == FIRST_VERSION


def test_versions_list_what_appliance_versions_reports_and_the_history(server: LiveServer) -> None:
    versions = decoded(server.get("/api/v1/data/versions"), DataVersions)
    report = json.loads(versions_json(server.data_dir))
    assert versions.current == report["current"] == FIRST_VERSION
    shown = msgspec.to_builtins(versions.versions)
    assert [v.pop("imported_via") for v in shown] == [imported_via(server, FIRST_VERSION)]
    assert shown == report["versions"]
    assert versions.history[0]["event"] == "import"
    assert versions.history[0]["version"] == FIRST_VERSION


def test_health_reports_the_version_and_the_no_ml_check(server: LiveServer) -> None:
    for path in ("/health", "/health/ready"):
        health = decoded(server.get(path), Health)
        assert (health.status, health.version) == ("ok", FIRST_VERSION)
        assert {check.name for check in health.checks} >= {"data_version", "no_ml"}
        assert all(check.ok for check in health.checks)
        assert (health.ml_importable, health.ml_loaded) == ([], [])


def test_liveness_and_startup_probes_answer_ok(server: LiveServer) -> None:
    assert decoded(server.get("/health/live"), dict[str, str]) == {"status": "ok"}
    startup = decoded(server.get("/health/startup"), dict[str, str])
    assert startup["status"] == "ok"
    assert re.fullmatch(r"[0-9a-f]{8}", startup["run"]), startup  # a run name of its own


def test_metrics_are_in_the_prometheus_text_format(server: LiveServer) -> None:
    server.get("/api/v1/items")
    samples = parse_metrics(server.get("/metrics").text)
    assert requests_total(samples, route="/api/v1/items", method="GET", status="200") >= 1
    versions = [labels for name, labels, _ in samples if name == "appliance_data_version_info"]
    assert versions
    assert {labels["version"] for labels in versions} == {FIRST_VERSION}


def test_metrics_content_type_is_the_prometheus_text_format(server: LiveServer) -> None:
    assert server.get("/metrics").headers["content-type"] == METRICS_CONTENT_TYPE


def test_openapi_document_describes_every_documented_path(server: LiveServer) -> None:
    document = decoded(server.get("/schema/openapi.json"), dict[str, Any])
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == DOCUMENTED_PATHS


# --- 2. version header, ETag, 304, gzip ----------------------------------------------------------


@pytest.mark.parametrize("path", DATA_ANSWERS)
def test_data_answers_carry_the_data_version_and_a_strong_etag(
    server: LiveServer, path: str
) -> None:
    answer = server.get(path)
    assert answer.status_code == 200
    assert answer.headers.get("x-data-version") == FIRST_VERSION
    assert re.fullmatch(r'"[^"]+"', answer.headers.get("etag", "")), answer.headers


@pytest.mark.parametrize("path", DATA_ANSWERS)
def test_if_none_match_with_the_etag_gives_304_without_a_body(
    server: LiveServer, path: str
) -> None:
    etag = server.get(path).headers.get("etag")
    assert etag
    answer = server.get(path, headers={"If-None-Match": etag})
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"] == etag
    assert answer.headers["x-data-version"] == FIRST_VERSION


@pytest.mark.parametrize("path", DATA_ANSWERS)
def test_if_none_match_with_another_etag_gives_the_answer(server: LiveServer, path: str) -> None:
    plain = server.get(path)
    answer = server.get(path, headers={"If-None-Match": '"v0000-0123456789abcdef"'})
    assert answer.status_code == 200
    assert answer.content == plain.content


@pytest.mark.parametrize("path", PRECOMPUTED_ANSWERS)
def test_precomputed_answers_are_sent_gzipped_to_clients_that_accept_it(
    server: LiveServer, path: str
) -> None:
    plain, plain_body = get_raw(server, path, {"Accept-Encoding": "identity"})
    zipped, zipped_body = get_raw(server, path, {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped.headers["vary"].lower()
    assert gzip.decompress(zipped_body) == plain_body
    assert len(zipped_body) < len(plain_body)


@pytest.mark.parametrize("path", DATA_ANSWERS)
def test_a_client_taking_gzip_gets_the_same_answer(server: LiveServer, path: str) -> None:
    _, plain_body = get_raw(server, path, {"Accept-Encoding": "identity"})
    zipped, zipped_body = get_raw(server, path, {"Accept-Encoding": "gzip"})
    if zipped.headers.get("content-encoding") == "gzip":
        zipped_body = gzip.decompress(zipped_body)
    assert zipped_body == plain_body


# --- 3 and 4. one error envelope, security headers -----------------------------------------------

OVERSIZED_JSON = b'{"version": "' + b"v" * (2 << 20) + b'"}'  # past the 1 MiB body limit
ERRORS = [
    pytest.param("GET", f"/api/v1/items/{ITEM}/timeseries?from=yesterday", b"", 400, id="400"),
    pytest.param("POST", "/api/v1/data/refresh", b"", 401, id="401"),
    pytest.param("GET", f"/api/v1/inventory/{UNKNOWN_ITEM}", b"", 404, id="404-item"),
    pytest.param("GET", "/api/v2/nothing-here", b"", 404, id="404-route"),
    pytest.param("POST", "/api/v1/items", b"", 405, id="405"),
    pytest.param("POST", "/api/v1/data/rollback", OVERSIZED_JSON, 413, id="413"),
    pytest.param("GET", "/api/v1/items?q=" + "x" * 3000, b"", 414, id="414"),
]


def send(server: LiveServer, method: str, path: str, body: bytes) -> httpx.Response:
    """One request on a fresh connection; a body goes with the admin token, to get past the guard."""
    headers = server.admin() if body else {}
    with server.client() as client:
        return client.request(method, path, headers=headers, content=body or None)


@pytest.mark.parametrize(("method", "path", "body", "status"), ERRORS)
def test_errors_use_one_envelope_with_the_request_id(
    server: LiveServer, method: str, path: str, body: bytes, status: int
) -> None:
    error_of(send(server, method, path, body), status)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [pytest.param("GET", "/api/v1/items", b"", 200, id="200"), *ERRORS],
)
def test_every_answer_carries_the_security_headers(
    server: LiveServer, method: str, path: str, body: bytes, status: int
) -> None:
    answer = send(server, method, path, body)
    assert answer.status_code == status
    for header in SECURITY_HEADERS:
        assert answer.headers.get(header), f"{header} missing on a {status}"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_a_304_carries_the_security_headers(server: LiveServer) -> None:
    etag = server.get(f"/api/v1/inventory/{ITEM}").headers["etag"]
    answer = server.get(f"/api/v1/inventory/{ITEM}", headers={"If-None-Match": etag})
    assert answer.status_code == 304
    assert all(answer.headers.get(header) for header in SECURITY_HEADERS)


# --- 5. auth -------------------------------------------------------------------------------------


def assert_tokens_never_logged(server: LiveServer, last: httpx.Response) -> None:
    """No token the tests sent appears in any log line (once the last request is logged)."""
    request_log(server, last)
    for line in list(server.log_lines):
        for token in (ADMIN_TOKEN, VIEWER_TOKEN, WRONG_TOKEN):
            assert token not in line, line


@pytest.mark.parametrize("path", ADMIN_ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer(WRONG_TOKEN), bearer(ADMIN_TOKEN[:-1]), {"Authorization": f"Basic {ADMIN_TOKEN}"}],
    ids=["no-token", "wrong-token", "token-prefix", "other-scheme"],
)
def test_admin_endpoints_refuse_a_missing_or_wrong_token(
    server: LiveServer, path: str, headers: dict[str, str]
) -> None:
    answer = server.post(path, headers=headers, json={"version": FIRST_VERSION})
    error_of(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert_tokens_never_logged(server, answer)


def test_the_admin_token_opens_the_admin_endpoints(server: LiveServer) -> None:
    refreshed = decoded(server.post("/api/v1/data/refresh", headers=server.admin()), DataVersion)
    assert refreshed.version == FIRST_VERSION
    # Past the guard, each handler judges the request itself (201 and 200: see the upload tests).
    error_of(server.post("/api/v1/data/packs", headers=server.admin()), 400)
    again = server.post(
        "/api/v1/data/rollback", headers=server.admin(), json={"version": FIRST_VERSION}
    )
    assert "already the current version" in error_of(again, 409).message
    assert_tokens_never_logged(server, again)


@pytest.mark.parametrize("path", ADMIN_ENDPOINTS)
def test_a_viewer_token_is_forbidden_on_admin_endpoints(
    viewer_server: LiveServer, path: str
) -> None:
    answer = viewer_server.post(path, headers=bearer(VIEWER_TOKEN), json={"version": FIRST_VERSION})
    error_of(answer, 403)
    assert_tokens_never_logged(viewer_server, answer)


@pytest.mark.parametrize("path", ADMIN_ENDPOINTS)
@pytest.mark.parametrize("headers", [{}, bearer(ADMIN_TOKEN)], ids=["no-token", "admin-token"])
def test_admin_endpoints_are_forbidden_when_no_admin_token_is_set(
    server_without_admin_token: LiveServer, path: str, headers: dict[str, str]
) -> None:
    answer = server_without_admin_token.post(path, headers=headers, json={"version": FIRST_VERSION})
    assert "disabled" in error_of(answer, 403).message


def test_reads_stay_open_when_no_admin_token_is_set(server_without_admin_token: LiveServer) -> None:
    for path in READ_ENDPOINTS:
        assert server_without_admin_token.get(path).status_code == 200, path


@pytest.mark.parametrize("path", READ_ENDPOINTS)
def test_in_viewer_mode_reads_need_the_viewer_or_admin_token(
    viewer_server: LiveServer, path: str
) -> None:
    for headers in ({}, bearer(WRONG_TOKEN), {"Authorization": VIEWER_TOKEN}):
        answer = viewer_server.get(path, headers=headers)
        error_of(answer, 401)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert viewer_server.get(path, headers=bearer(VIEWER_TOKEN)).status_code == 200
    last = viewer_server.get(path, headers=bearer(ADMIN_TOKEN))
    assert last.status_code == 200
    assert_tokens_never_logged(viewer_server, last)


def test_in_viewer_mode_an_etag_does_not_stand_in_for_the_token(viewer_server: LiveServer) -> None:
    path = f"/api/v1/inventory/{ITEM}"
    etag = viewer_server.get(path, headers=bearer(VIEWER_TOKEN)).headers["etag"]
    error_of(viewer_server.get(path, headers={"If-None-Match": etag}), 401)


@pytest.mark.parametrize("path", HEALTH_ENDPOINTS)
def test_in_viewer_mode_health_and_metrics_stay_open(viewer_server: LiveServer, path: str) -> None:
    assert viewer_server.get(path).status_code == 200


# --- 6. rate limits shared across workers --------------------------------------------------------


def test_the_rate_limit_is_shared_by_the_workers(rate_limited_server: LiveServer) -> None:
    fresh_rate_window()
    answers = [rate_limited_server.get("/api/v1/items?limit=1") for _ in range(30)]
    assert len(served_by(rate_limited_server, answers)) == 2
    allowed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert len(allowed) == RATE_LIMIT
    for answer in refused:
        error_of(answer, 429)
        assert int(answer.headers["retry-after"]) >= 1
    assert rate_limited_server.get("/health").status_code == 200


def test_admin_requests_have_their_own_limit_and_bad_tokens_count(
    rate_limited_server: LiveServer,
) -> None:
    fresh_rate_window()
    wrong = bearer(WRONG_TOKEN)
    tries = [
        rate_limited_server.post("/api/v1/data/refresh", headers=wrong)
        for _ in range(ADMIN_RATE_LIMIT + 2)
    ]
    assert [a.status_code for a in tries] == [401] * ADMIN_RATE_LIMIT + [429] * 2
    with_token = rate_limited_server.post(
        "/api/v1/data/refresh", headers=rate_limited_server.admin()
    )
    error_of(with_token, 429)
    assert int(with_token.headers["retry-after"]) >= 1


# --- 7. uploads, rollback ------------------------------------------------------------------------


def test_an_uploaded_pack_is_published_and_every_worker_serves_it_within_a_second(
    publishing_server: LiveServer, newer_pack_upload: tuple[httpx.Response, float]
) -> None:
    answer, answered_at = newer_pack_upload
    result = decoded(answer, ImportResult, 201)
    assert (result.version, result.previous) == ("v0002", FIRST_VERSION)
    assert result.generated_at == "2026-11-02T00:00:00Z"
    assert result.rows["dim_item"] == SMALL_ITEMS
    time.sleep(max(0.0, answered_at + 1.0 - time.monotonic()))
    assert served_versions(publishing_server) == {"v0002"}
    assert json.loads(versions_json(publishing_server.data_dir))["current"] == "v0002"


def test_rollback_serves_an_earlier_version_on_every_worker(
    publishing_server: LiveServer, newer_pack_upload: tuple[httpx.Response, float]
) -> None:
    assert newer_pack_upload[0].status_code == 201
    admin = publishing_server.admin()
    back = publishing_server.post(
        "/api/v1/data/rollback", headers=admin, json={"version": FIRST_VERSION}
    )
    assert decoded(back, DataVersion).version == FIRST_VERSION
    time.sleep(1.0)
    assert served_versions(publishing_server) == {FIRST_VERSION}
    forward = publishing_server.post(
        "/api/v1/data/rollback", headers=admin, json={"version": "v0002"}
    )
    assert decoded(forward, DataVersion).version == "v0002"


@pytest.mark.parametrize(
    "body",
    [b'{"version": "v0099"}', b'{"version": "../../etc"}'],
    ids=["unknown-version", "not-a-version-id"],
)
def test_rollback_to_a_version_that_does_not_exist_is_not_found(
    upload_server: LiveServer, body: bytes
) -> None:
    before = versions_json(upload_server.data_dir)
    headers = upload_server.admin() | {"content-type": "application/json"}
    error_of(upload_server.post("/api/v1/data/rollback", headers=headers, content=body), 404)
    assert versions_json(upload_server.data_dir) == before


@pytest.mark.parametrize(
    "body",
    [b'{"version": ', b"not json", b"[]", b'{"version": 1}', b"{}", b""],
    ids=["truncated-json", "not-json", "array", "number-version", "no-version", "empty"],
)
def test_rollback_with_a_malformed_body_is_a_bad_request(
    upload_server: LiveServer, body: bytes
) -> None:
    headers = upload_server.admin() | {"content-type": "application/json"}
    error_of(upload_server.post("/api/v1/data/rollback", headers=headers, content=body), 400)


@pytest.mark.parametrize(
    ("bad_pack", "reason"),
    [
        ("pack_signed_by_untrusted_key", "signature"),
        ("pack_truncated_in_table", "truncated"),
        ("pack_with_symlink", "unsafe-member"),
        ("pack_not_a_tar", "not-a-pack"),
    ],
)
def test_a_bad_pack_is_refused_with_its_reason_and_changes_nothing(
    upload_server: LiveServer, request: pytest.FixtureRequest, bad_pack: str, reason: str
) -> None:
    pack: Path = request.getfixturevalue(bad_pack)
    data_dir = upload_server.data_dir
    before = versions_json(data_dir)
    detail = error_of(upload(upload_server, pack.read_bytes()), 422)
    assert detail.reason == reason
    assert versions_json(data_dir) == before
    assert list((data_dir / "staging").iterdir()) == []
    assert list((data_dir / "run").glob("*/uploads/*")) == []


def test_an_empty_upload_is_a_bad_request(upload_server: LiveServer) -> None:
    before = versions_json(upload_server.data_dir)
    assert "empty" in error_of(upload(upload_server, b""), 400).message
    assert versions_json(upload_server.data_dir) == before


def test_an_upload_above_the_limit_is_too_large_and_leaves_nothing(
    upload_server: LiveServer,
) -> None:
    data_dir = upload_server.data_dir
    before = versions_json(data_dir)
    error_of(upload(upload_server, os.urandom(2 << 20)), 413)
    assert list((data_dir / "run").glob("*/uploads/*")) == []
    assert list((data_dir / "staging").iterdir()) == []
    assert versions_json(data_dir) == before


# --- 8. hostile inputs ---------------------------------------------------------------------------

HOSTILE = [
    pytest.param("/api/v1/items/..%2F..%2Fetc%2Fpasswd/timeseries", {400, 404}, id="path_traversal_in_item_id"),
    pytest.param("/api/v1/inventory/%2e%2e", {400, 404}, id="dot_dot_as_item_id"),
    pytest.param("/api/v1/inventory/..%2F..%2F..%2Fetc%2Fpasswd", {400, 404}, id="path_traversal_in_inventory_id"),
    pytest.param("/api/v1/items/IT-1' OR '1'='1/timeseries", {400, 404}, id="sql_quote_in_item_id"),
    pytest.param("/api/v1/inventory/x;DROP TABLE dim_item", {400, 404}, id="sql_statement_in_item_id"),
    pytest.param("/api/v1/inventory/IT-0000001%00", {400, 404}, id="nul_byte_in_item_id"),
    pytest.param("/api/v1/items?q=" + "x" * 10_000, {414}, id="query_string_of_10000_chars"),
    pytest.param("/api/v1/items/" + "x" * 2000 + "/timeseries", {414}, id="path_of_2000_chars"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries?from=2026-02-30", {400}, id="impossible_date"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries?from=yesterday", {400}, id="word_for_a_date"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries?to=-1", {400}, id="negative_number_for_a_date"),
    pytest.param(f"/api/v1/items/{ITEM}/timeseries?from=2026-11-01T00:00:00", {400}, id="timestamp_for_a_date"),
    pytest.param("/api/v1/items?limit=100000", {400}, id="huge_limit"),
    pytest.param("/api/v1/items?limit=-1", {400}, id="negative_limit"),
    pytest.param("/api/v1/items?limit=0", {400}, id="zero_limit"),
    pytest.param("/api/v1/items?limit=ten", {400}, id="word_for_a_limit"),
    pytest.param("/api/v1/items?sort=price", {400}, id="unknown_sort"),
    pytest.param("/api/v1/items?sort=item_id;DROP TABLE dim_item", {400}, id="sql_in_sort"),
    pytest.param("/api/v1/items?cursor=not-a-token", {400}, id="cursor_not_a_token"),
    pytest.param("/api/v1/items?cursor=" + "A" * 600, {400}, id="cursor_of_600_chars"),
    pytest.param("/api/v1/items?cursor=" + cursor_token(["risk", ITEM, 0.5]), {400}, id="cursor_for_another_sort"),
    pytest.param("/api/v1/items?cursor=" + cursor_token(["item_id", {"$gt": ""}, 0]), {400}, id="cursor_with_object_item_id"),
    pytest.param("/api/v1/items?cursor=" + cursor_token(["item_id", ITEM, "0 OR 1=1"]), {400}, id="cursor_with_text_risk"),
    pytest.param("/api/v1/items?cursor=" + cursor_token(["item_id", ITEM, True]), {400}, id="cursor_with_boolean_risk"),
    pytest.param("/api/v1/items?sort=risk&cursor=" + cursor_token(["risk", ITEM, float("nan")]), {400}, id="cursor_with_nan_risk"),
    pytest.param("/api/v1/items?cursor=" + cursor_token(["item_id", ITEM]), {400}, id="cursor_missing_a_field"),
    pytest.param("/api/v1/items?q=" + "x" * 101, {400}, id="search_of_101_chars"),
    pytest.param("/api/v1/forecasts/summary?category=" + "x" * 65, {400}, id="category_of_65_chars"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "statuses"), HOSTILE)
def test_hostile_input_is_refused_in_the_envelope_and_harms_nothing(
    server: LiveServer, path: str, statuses: set[int]
) -> None:
    rows = dim_item_rows(server.data_dir)
    answer = server.get(path)
    assert answer.status_code in statuses, answer.text[:300]
    error_of(answer, answer.status_code)
    every_worker_ready(server)
    assert dim_item_rows(server.data_dir) == rows


@pytest.mark.parametrize("text", ["%", "_", "%%", "' OR '1'='1", "\\", "x%' OR 1=1 --"], ids=repr)
def test_search_text_is_matched_literally(server: LiveServer, text: str) -> None:
    everything = all_items(server)
    expected = [
        i for i in everything if text.lower() in i.name.lower() or text.lower() in i.item_id.lower()
    ]
    page = decoded(server.get("/api/v1/items", params={"q": text, "limit": 500}), ItemsPage)
    assert page.items == expected
    assert page.total == len(expected) < SMALL_ITEMS


@pytest.mark.parametrize("field", ["category", "site"])
def test_filters_are_matched_literally(server: LiveServer, field: str) -> None:
    page = decoded(server.get("/api/v1/items", params={field: "x' OR '1'='1"}), ItemsPage)
    assert (page.items, page.total) == ([], 0)
    summary = decoded(server.get("/api/v1/forecasts/summary", params={field: "%"}), ForecastSummary)
    assert summary.items == 0


def test_a_cursor_carrying_sql_only_moves_the_page_start(server: LiveServer) -> None:
    token = cursor_token(["item_id", "IT-0000028' OR '1'='1", 0])
    page = decoded(server.get(f"/api/v1/items?limit=500&cursor={token}"), ItemsPage)
    assert [item.item_id for item in page.items] == ["IT-0000029", "IT-0000030"]


# --- 9. metrics across workers -------------------------------------------------------------------


def test_request_counts_add_up_over_the_workers_whichever_answers(server: LiveServer) -> None:
    time.sleep(FLUSH_WAIT)
    before = requests_total(parse_metrics(server.get("/metrics").text))
    made = len(from_every_worker(server, f"/api/v1/inventory/{ITEM}", at_least=24))
    time.sleep(FLUSH_WAIT)
    scrapes = from_every_worker(server, "/metrics")
    totals = [requests_total(parse_metrics(scrape.text)) for scrape in scrapes]
    expected = before + 1 + made  # the first scrape counts too
    assert totals[0] == expected
    # Scrapes made since may or may not be counted yet, depending on the worker that answers.
    for made_since, total in enumerate(totals):
        assert expected <= total <= expected + made_since
    assert totals == sorted(totals)


def test_each_latency_histogram_counts_the_requests_of_its_route(server: LiveServer) -> None:
    for path in (f"/api/v1/items/{ITEM}/timeseries", "/api/v1/nothing", "/health/live"):
        server.get(path)
    time.sleep(FLUSH_WAIT)
    samples = parse_metrics(server.get("/metrics").text)
    counts = {
        labels["route"]: value
        for name, labels, value in samples
        if name == "appliance_http_request_duration_seconds_count"
    }
    assert {"/api/v1/items/{item_id}/timeseries", "unmatched", "/health/live"} <= set(counts)
    for route, count in counts.items():
        assert requests_total(samples, route=route) == count, route
        buckets = [
            (labels["le"], value)
            for name, labels, value in samples
            if name == "appliance_http_request_duration_seconds_bucket" and labels["route"] == route
        ]
        assert buckets[-1] == ("+Inf", count)
        assert [value for _, value in buckets] == sorted(value for _, value in buckets)


# --- 10. logs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "traced"),
    [
        (f"/api/v1/items/{ITEM}/timeseries?from=2026-11-01", True),
        ("/api/v1/items?sort=risk", True),
        (f"/api/v1/inventory/{ITEM}", True),
        ("/api/v1/data/current", True),
        ("/health", False),
        ("/api/v1/items?limit=0", False),
        ("/no/such/route", False),
    ],
)
def test_each_request_writes_one_json_log_line_with_its_id_and_version(
    server: LiveServer, path: str, traced: bool
) -> None:
    answer = server.get(path)
    record = request_log(server, answer)
    assert record["request_id"] == answer.headers["x-request-id"]
    assert record["method"] == "GET"
    assert record["path"] == path.partition("?")[0]
    assert record["status"] == answer.status_code
    assert isinstance(record["duration_ms"], int | float)
    assert record["duration_ms"] >= 0
    assert {"data_version", "dataset_id", "model_version", "worker"} <= set(record)
    if traced:
        assert (record["data_version"], record["dataset_id"], record["model_version"]) == TRACE


def test_each_worker_logs_the_version_it_started_with(server: LiveServer) -> None:
    started = {r["worker"]: r for r in log_records(server) if r["msg"] == "worker started"}
    assert set(started) == server.worker_pids()
    for record in started.values():
        assert (record["data_version"], record["dataset_id"], record["model_version"]) == TRACE


# --- 11. no ML route -----------------------------------------------------------------------------


def test_the_openapi_document_has_no_ml_route(server: LiveServer) -> None:
    paths = decoded(server.get("/schema/openapi.json"), dict[str, Any])["paths"]
    for path in paths:
        lowered = path.lower()
        assert not any(word in lowered for word in ML_WORDS), path
        assert "forecast" not in lowered.split("/"), path
        assert path in DOCUMENTED_PATHS, path
    assert "/api/v1/forecasts/summary" in paths
    assert set(paths["/api/v1/forecasts/summary"]) == {"get"}


def test_gzip_and_plain_bodies_of_one_answer_have_different_strong_etags(
    server: LiveServer,
) -> None:
    path = "/api/v1/items/IT-0000003/timeseries"
    plain = server.get(path, headers={"Accept-Encoding": "identity"})
    zipped = server.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["etag"] != zipped.headers["etag"]
    for response, encoding in ((plain, "identity"), (zipped, "gzip")):
        again = server.get(
            path, headers={"Accept-Encoding": encoding, "If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304
    crossed = server.get(
        path, headers={"Accept-Encoding": "identity", "If-None-Match": zipped.headers["etag"]}
    )
    assert crossed.status_code == 200
