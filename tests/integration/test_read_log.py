"""The real server's log at its default read budget: a few reads in full, all of them counted.

One worker, APPLIANCE_LOG_READS at its default (2 a second): a burst of reads gets a handful of
`request` lines, every error its own line, and the `reads` line written when the worker stops
counts every successful read exactly, with the version fields on every line written.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from appliance.settings import LOG_READS
from tests.conftest import Signer, import_into
from tests.integration.live_server import live_server

ITEM = "IT-0000001"
BURST = 60


def test_a_burst_of_reads_is_counted_not_logged_line_by_line(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    import_into(tmp_path / "data", good_pack, signer)
    env = {"APPLIANCE_LOG_READS": LOG_READS.default}
    with live_server(tmp_path / "data", signer.allowed_signers, workers=1, env=env) as server:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            for number in range(BURST):
                target = f"/api/v1/items/{ITEM}/timeseries" if number % 2 else "/api/v1/items"
                assert client.get(target).status_code == 200
            assert client.get("/api/v1/items/IT-9999999/timeseries").status_code == 404
            assert client.post("/api/v1/data/refresh").status_code == 401
        server.stop()
        records = [json.loads(line) for line in server.log_lines if line.startswith("{")]
    requests = [r for r in records if r["msg"] == "request"]
    windows = [r for r in records if r["msg"] == "reads"]
    statuses = sorted(r["status"] for r in requests)
    assert 404 in statuses and 401 in statuses, "every error has its own line"
    full_reads = [r for r in requests if r["status"] == 200]
    assert 1 <= len(full_reads) < BURST // 4, "reads beyond the budget are not logged one by one"
    routes: dict[str, int] = {}
    for window in windows:
        for route, count in window["routes"].items():
            routes[route] = routes.get(route, 0) + count
    assert sum(w["reads"] for w in windows) == sum(routes.values())
    assert sum(w["logged"] for w in windows) >= len(
        full_reads
    )  # the readiness probes are reads too
    api = {route: count for route, count in routes.items() if " /api/" in route}
    assert api == {
        "GET /api/v1/items 200": BURST // 2,
        "GET /api/v1/items/{item_id}/timeseries 200": BURST // 2,
    }
    served = [w for w in windows if any(" /api/" in route for route in w["routes"])]
    for line in [*(r for r in full_reads if r["path"].startswith("/api/")), *served]:
        assert line["data_version"] == "v0001"
        assert line["dataset_id"] and line["model_version"]
