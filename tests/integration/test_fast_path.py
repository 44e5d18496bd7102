"""The request edge's own answers (server/fast_path.py) are the framework's, byte for byte.

Two real servers (Granian, two workers each) serve copies of one store, one with the fast path
(the default) and one with APPLIANCE_FAST_PATH=0, so that every request goes through Litestar.
Each request below goes to both; status, headers (but the request id and the date) and body
must be the same, and so must the metrics each server counts. The requests cover what the fast
path answers (whole series, inventory, ranges, item pages, summaries, 304s, HEAD) and what it
must leave to the framework (bad tokens, unknown items, odd spellings, repeated headers).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Signer, import_into
from tests.integration.live_server import ADMIN_TOKEN, VIEWER_TOKEN, LiveServer, live_server

ITEM = "IT-0000001"
SKIPPED_HEADERS = {"x-request-id", "date"}


@dataclass
class Pair:
    fast: LiveServer
    framework: LiveServer


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("fast-path")
    import_into(folder / "fast", good_pack, signer)
    shutil.copytree(folder / "fast", folder / "framework", symlinks=True)
    env = {"APPLIANCE_VIEWER_TOKEN": VIEWER_TOKEN}
    with (
        live_server(folder / "fast", signer.allowed_signers, env=env) as fast,
        live_server(
            folder / "framework",
            signer.allowed_signers,
            env=env | {"APPLIANCE_FAST_PATH": "0"},
        ) as framework,
    ):
        yield Pair(fast, framework)


def exchange(
    server: LiveServer, method: str, target: str, headers: list[tuple[str, str]]
) -> httpx.Response:
    with httpx.Client(base_url=server.base, timeout=10) as client:
        request = client.build_request(method, target, headers=headers)
        request.headers.pop("accept-encoding", None)
        for name, value in headers:  # build_request folds repeats; the edge must see them
            if name.lower() == "accept-encoding":
                request.headers["accept-encoding"] = value
        return client.send(request)


def shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body; the request id and date left out, Allow's order too (a set)."""
    headers = [
        (n, ", ".join(sorted(v.split(", "))) if n == "allow" else v)
        for n, v in response.headers.multi_items()
        if n not in SKIPPED_HEADERS
    ]
    body = response.content
    if response.status_code >= 400:  # the error envelope names the request id
        body = body.replace(response.headers["x-request-id"].encode(), b"RID")
    return response.status_code, headers, body


VIEWER = [("authorization", f"Bearer {VIEWER_TOKEN}")]
ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]
GZIP = [("accept-encoding", "gzip")]


def cursor_after(item_id: str, sort: str = "item_id", risk: float | None = None) -> str:
    token = json.dumps([sort, item_id, risk]).encode()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


REQUESTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # whole series and inventory: gzip, plain, HEAD, admin token, odd path spellings
    ("GET", f"/api/v1/items/{ITEM}/timeseries", VIEWER + GZIP),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", [*VIEWER, ("accept-encoding", "gzip;q=0")]),
    ("HEAD", f"/api/v1/items/{ITEM}/timeseries", VIEWER + GZIP),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", ADMIN + GZIP),
    ("GET", f"/api/v1//items/{ITEM}/./timeseries/", VIEWER + GZIP),
    ("GET", f"/api/v1/inventory/{ITEM}", VIEWER + GZIP),
    ("GET", f"/api/v1/inventory/{ITEM}", VIEWER),
    ("GET", f"/api/v1/inventory/{ITEM}?unknown=1", VIEWER),
    # ranges
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026-10-01&to=2026-10-20", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026-10-01", VIEWER + GZIP),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?to=2026-10-05", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2030-01-01&to=2030-02-01", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026-10-20&to=2026-10-01", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026-13-01", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026-10-01&from=2026-10-02", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=2026%2D10%2D01", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries?from=", VIEWER),
    # item pages
    ("GET", "/api/v1/items", VIEWER),
    ("GET", "/api/v1/items?limit=5", VIEWER + GZIP),
    ("GET", "/api/v1/items?limit=5&sort=risk", VIEWER),
    ("GET", f"/api/v1/items?limit=5&cursor={cursor_after('IT-0000010')}", VIEWER),
    (
        "GET",
        f"/api/v1/items?limit=3&sort=risk&cursor={cursor_after('IT-0000004', 'risk', 0.5)}",
        VIEWER,
    ),
    ("GET", "/api/v1/items?limit=4&sort=cover", VIEWER),
    (
        "GET",
        f"/api/v1/items?limit=4&sort=cover&cursor={cursor_after('IT-0000004', 'cover')}",
        VIEWER,
    ),
    ("GET", "/api/v1/items?limit=4&sort=units&category=Radio", VIEWER),
    ("GET", f"/api/v1/items?sort=units&cursor={cursor_after('IT-0000002', 'units', 3.5)}", VIEWER),
    ("GET", "/api/v1/items?q=it-00000", VIEWER),
    ("GET", "/api/v1/items?q=IT-0000001", VIEWER),
    ("GET", "/api/v1/items?q=no-such-item", VIEWER),
    ("GET", "/api/v1/items?category=Radio", VIEWER),
    ("GET", "/api/v1/items?category=Radio&site=nowhere", VIEWER),
    ("GET", "/api/v1/items?q=%25", VIEWER),
    ("GET", "/api/v1/items?q=a+b", VIEWER),
    ("GET", "/api/v1/items?limit=0", VIEWER),
    ("GET", "/api/v1/items?limit=501", VIEWER),
    ("GET", "/api/v1/items?limit=050", VIEWER),
    ("GET", "/api/v1/items?sort=price", VIEWER),
    ("GET", "/api/v1/items?cursor=not-a-token", VIEWER),
    ("GET", f"/api/v1/items?cursor={cursor_after('IT-0000001', 'risk', 0.1)}", VIEWER),
    ("GET", "/api/v1/items?q=" + "x" * 101, VIEWER),
    ("GET", "/api/v1/items?q", VIEWER),
    # summaries (the second of each is from memory on the fast path when the same worker answers)
    ("GET", "/api/v1/forecasts/summary", VIEWER),
    ("GET", "/api/v1/forecasts/summary", VIEWER),
    ("GET", "/api/v1/forecasts/summary?category=Radio", VIEWER),
    ("GET", "/api/v1/forecasts/summary?category=Radio", VIEWER),
    # what the fast path must leave to the framework
    ("GET", f"/api/v1/items/{ITEM}/timeseries", GZIP),
    (
        "GET",
        f"/api/v1/items/{ITEM}/timeseries",
        [("authorization", "Bearer wrong-token-0123456789")],
    ),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", [("authorization", f"Basic {VIEWER_TOKEN}")]),
    ("GET", "/api/v1/items/IT-9999999/timeseries", VIEWER),
    ("GET", "/api/v1/inventory/IT-9999999", VIEWER),
    ("GET", "/api/v1/items/bad%20id/timeseries", VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", VIEWER + VIEWER),
    ("GET", f"/api/v1/items/{ITEM}/timeseries", [*VIEWER, ("host", "bad host")]),
    ("POST", f"/api/v1/items/{ITEM}/timeseries", VIEWER),
]


@pytest.mark.parametrize(("method", "target", "headers"), REQUESTS, ids=lambda v: str(v)[:60])
def test_both_paths_answer_alike(
    pair: Pair, method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    fast = exchange(pair.fast, method, target, headers)
    framework = exchange(pair.framework, method, target, headers)
    assert shape(fast) == shape(framework)


def test_revalidations_agree(pair: Pair) -> None:
    for target in (
        f"/api/v1/items/{ITEM}/timeseries",
        f"/api/v1/inventory/{ITEM}",
        f"/api/v1/items/{ITEM}/timeseries?from=2026-10-01&to=2026-10-20",
        "/api/v1/items?limit=5",
        "/api/v1/forecasts/summary",
    ):
        for encoding in (GZIP, []):
            etag = exchange(pair.framework, "GET", target, VIEWER + encoding).headers["etag"]
            assert exchange(pair.fast, "GET", target, VIEWER + encoding).headers["etag"] == etag
            for sent in (etag, f"W/{etag}", f'"other", {etag}', "*", '"stale"'):
                asked = [*VIEWER, *encoding, ("if-none-match", sent)]
                assert shape(exchange(pair.fast, "GET", target, asked)) == shape(
                    exchange(pair.framework, "GET", target, asked)
                ), (target, encoding, sent)


def test_the_fast_path_counts_and_logs_as_the_framework(pair: Pair) -> None:
    target = f"/api/v1/items/{ITEM}/timeseries?from=2026-10-02&to=2026-10-09"
    for server in (pair.fast, pair.framework):
        for _ in range(3):
            assert exchange(server, "GET", target, VIEWER).status_code == 200

    def counted(server: LiveServer) -> list[str]:
        """The API's request counts (the readiness probes before the tests differ in number)."""
        text = httpx.get(server.url("/metrics"), timeout=10).text
        prefix = "appliance_http_requests_total{"
        return sorted(
            line for line in text.splitlines() if line.startswith(prefix) and "/api/" in line
        )

    # Each worker writes its counts for the others every second (server/runtime.py).
    deadline = time.monotonic() + 10
    while counted(pair.fast) != counted(pair.framework) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted(pair.fast) == counted(pair.framework)
    lines = [json.loads(line) for line in pair.fast.log_lines if line.startswith("{")]
    answered = [
        r
        for r in lines
        if r.get("msg") == "request"
        and r["status"] == 200
        and r["path"].startswith("/api/v1/items")
    ]
    assert answered, "the fast path's reads are logged"
    assert all(
        r["data_version"] == "v0001" and r["dataset_id"] and r["model_version"] for r in answered
    )
