"""The server's edge against hostile and failing clients (issue 10: defects 1, 11, 12, 13, 14).

Every test talks to a real `appliance serve` (Granian, two workers) on 127.0.0.1, mostly through
raw sockets: HTTP clients normalise paths and never stall or cut a body short, which is exactly
what these tests need to do. Each rate-limit test sends from its own loopback address
(127.0.0.0/8 all reaches the server), so each has a budget of its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import msgspec
import pytest

from appliance.packs.pack_layout import table_member
from server.schemas import ErrorBody, ErrorDetail
from tests.conftest import BIN, Signer, run
from tests.integration.live_server import ADMIN_TOKEN, LiveServer, free_port, live_server
from tests.integration.test_server_api import (
    ITEM,
    fresh_rate_window,
    log_records,
    parse_metrics,
    store_with_good_pack,
)
from tests.packs import ForgedPack

READ_LIMIT, ADMIN_LIMIT = 5, 3
HEADER_TIMEOUT, BODY_TIMEOUT = 2, 2
SLACK = 2.0  # seconds a close may come after its bound on a loaded 2-core machine
UPLOAD_LIMIT_MB = 1_000_000  # the largest the setting takes, so 507 comes before 413
ABSOLUTE_PATH = re.compile(r"(?<![\w./-])/(?!api/)[^\s'\"():,;]+")
ADMIN_SPELLINGS = [
    pytest.param("//api/v1/data/refresh", id="leading-double-slash"),
    pytest.param("/api/v1//data/refresh", id="inner-double-slash"),
    pytest.param("/api/v1/./data/refresh", id="dot-segment"),
    pytest.param("/api/v1/data/../data/refresh", id="dot-dot-segment"),
    pytest.param("/api/v1/data%2Frefresh", id="encoded-slash"),
    pytest.param("/api/v1/data/refresh/", id="trailing-slash"),
    pytest.param("/API/v1/data/refresh", id="upper-case-prefix"),
    pytest.param("/Api/V1/Data/Refresh", id="mixed-case"),
]
READ_SPELLINGS = [
    pytest.param("//api/v1/data/current", id="leading-double-slash"),
    pytest.param("/api/v1//data/current", id="inner-double-slash"),
    pytest.param("/api/v1/./data/current", id="dot-segment"),
    pytest.param("/api/v1/items/../data/current", id="dot-dot-segment"),
    pytest.param("/api/v1/data%2Fcurrent", id="encoded-slash"),
    pytest.param("/api/v1/data/current/", id="trailing-slash"),
    pytest.param("/API/v1/data/current", id="upper-case-prefix"),
    pytest.param("/Api/V1/Data/Current", id="mixed-case"),
]
GET_ROUTES = [
    "/api/v1/items",
    f"/api/v1/items/{ITEM}/timeseries",
    "/api/v1/forecasts/summary",
    f"/api/v1/inventory/{ITEM}",
    "/api/v1/data/current",
    "/api/v1/data/versions",
    "/health",
    "/health/live",
    "/health/ready",
    "/health/startup",
    "/metrics",
    "/schema/openapi.json",
]
_addresses = count(10)


def own_address() -> str:
    """A loopback address no other test sends from."""
    number = next(_addresses)
    return f"127.0.{number // 250}.{number % 250 + 2}"


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> ErrorDetail:
        """The error envelope of this answer."""
        return msgspec.json.decode(self.body, type=ErrorBody).error


def connect(server: LiveServer, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the server from `source`."""
    return socket.create_connection(
        ("127.0.0.1", server.port), timeout=30, source_address=(source, 0)
    )


def read_answer(sock: socket.socket) -> RawAnswer:
    """Read one answer until the server closes the connection (requests say Connection: close)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, body)


def raw_request(
    server: LiveServer,
    method: str,
    target: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> RawAnswer:
    """One request sent byte for byte as given (no client normalises the target)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    with connect(server, source) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return read_answer(sock)


def request_line_of(server: LiveServer, request_id: str, timeout: float = 5) -> dict[str, object]:
    """The log line of the request with this id (log lines arrive a little after the answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in log_records(server):
            if record.get("request_id") == request_id and record["msg"] == "request":
                return record
        time.sleep(0.02)
    raise AssertionError(f"no log line for request {request_id}")


def wrong_token() -> dict[str, str]:
    return {"Authorization": "Bearer not-the-admin-token-0123456789"}


def assert_no_node_path(message: str, data_dir: Path) -> None:
    """The message names no file of the node (API routes are not files)."""
    assert str(data_dir) not in message
    assert str(data_dir.resolve()) not in message
    assert not ABSOLUTE_PATH.search(message), message


def uploads_of(server: LiveServer) -> list[Path]:
    """The uploads being received in every run folder of the server's data dir."""
    return sorted((server.data_dir / "run").glob("*/uploads/*"))


# --- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server allowing 5 API requests and 3 admin requests a minute per client address."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {
        "APPLIANCE_RATE_LIMIT": str(READ_LIMIT),
        "APPLIANCE_ADMIN_RATE_LIMIT": str(ADMIN_LIMIT),
    }
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def edge_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server with 2 s header and body timeouts and no rate limits."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {
        "APPLIANCE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "APPLIANCE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "APPLIANCE_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
    }
    with live_server(data_dir, signer.allowed_signers, env=env) as started:
        yield started


# --- defect 1: one path for limits, routing, logs and metrics ------------------------------------


@pytest.mark.parametrize("spelling", ADMIN_SPELLINGS)
def test_every_spelling_of_an_admin_route_counts_against_the_admin_limit(
    limited_server: LiveServer, spelling: str
) -> None:
    fresh_rate_window()
    source = own_address()
    for _ in range(ADMIN_LIMIT):
        answer = raw_request(limited_server, "POST", "/api/v1/data/refresh", source=source,
                             headers=wrong_token())  # fmt: skip
        assert answer.status == 401
    refused = raw_request(limited_server, "POST", spelling, source=source, headers=wrong_token())
    assert refused.status == 429, refused.body
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.parametrize("spelling", ADMIN_SPELLINGS)
def test_an_admin_route_spelled_otherwise_gets_the_admin_budget_not_the_read_one(
    limited_server: LiveServer, spelling: str
) -> None:
    fresh_rate_window()
    source = own_address()
    statuses = [
        raw_request(limited_server, "POST", spelling, source=source, headers=wrong_token()).status
        for _ in range(ADMIN_LIMIT + 1)
    ]
    assert statuses[-1] == 429
    assert all(status in (401, 404, 405) for status in statuses[:-1]), statuses


@pytest.mark.parametrize("spelling", READ_SPELLINGS)
def test_every_spelling_of_a_read_route_counts_against_the_read_limit(
    limited_server: LiveServer, spelling: str
) -> None:
    fresh_rate_window()
    source = own_address()
    for _ in range(READ_LIMIT):
        assert (
            raw_request(limited_server, "GET", "/api/v1/data/current", source=source).status == 200
        )
    refused = raw_request(limited_server, "GET", spelling, source=source)
    assert refused.status == 429, refused.body


@pytest.mark.parametrize(
    "spelling", ["//api/v1/data/current", "/api/v1/./data//current/", "/api/v1/data%2Fcurrent"]
)
def test_a_spelling_is_routed_logged_and_measured_as_the_canonical_path(
    limited_server: LiveServer, spelling: str
) -> None:
    fresh_rate_window()
    answer = raw_request(limited_server, "GET", spelling, source=own_address())
    assert answer.status == 200
    record = request_line_of(limited_server, answer.headers["x-request-id"])
    assert record["path"] == "/api/v1/data/current"
    assert record["target"] == spelling
    time.sleep(1.5)  # the workers flush their metrics every second
    samples = parse_metrics(limited_server.get("/metrics").text)
    routes = {
        labels.get("route") for name, labels, _ in samples if name.startswith("appliance_http")
    }
    assert "/api/v1/data/current" in routes
    assert not {route for route in routes if route and "//" in route}


def test_a_refusal_of_a_spelled_admin_route_is_logged_and_counted_as_admin(
    limited_server: LiveServer,
) -> None:
    fresh_rate_window()
    source = own_address()
    before = parse_metrics(limited_server.get("/metrics").text)
    for _ in range(ADMIN_LIMIT):
        raw_request(
            limited_server, "POST", "//api/v1/data/refresh", source=source, headers=wrong_token()
        )
    refused = raw_request(limited_server, "POST", "//api/v1/data/refresh", source=source,
                          headers=wrong_token())  # fmt: skip
    assert refused.status == 429
    record = request_line_of(limited_server, refused.headers["x-request-id"])
    assert (record["path"], record["target"], record["status"]) == (
        "/api/v1/data/refresh", "//api/v1/data/refresh", 429,
    )  # fmt: skip
    time.sleep(1.5)
    after = parse_metrics(limited_server.get("/metrics").text)

    def admin_refusals(samples: list[tuple[str, dict[str, str], float]]) -> float:
        return sum(v for n, labels, v in samples
                   if n == "appliance_rate_limited_total" and labels == {"kind": "admin"})  # fmt: skip

    assert admin_refusals(after) == admin_refusals(before) + 1


# --- defect 12: slow clients ---------------------------------------------------------------------


def trickle(sock: socket.socket, stop: float) -> float | None:
    """Send a request's headers a byte every 0.2 s; seconds until the server closed, or None."""
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    sock.settimeout(0.2)
    for byte in request:
        try:
            sock.send(bytes([byte]))
            if sock.recv(1) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if time.monotonic() > stop:
            return None
    return None


def idle(sock: socket.socket, stop: float) -> float | None:
    """Send nothing; seconds until the server closed, or None."""
    started = time.monotonic()
    sock.settimeout(max(0.1, stop - started))
    try:
        sock.recv(1)
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - started


def test_slow_and_idle_clients_are_closed_within_the_header_timeout_while_others_are_served(
    edge_server: LiveServer,
) -> None:
    bound = HEADER_TIMEOUT + SLACK
    stop = time.monotonic() + bound + 3
    closed: list[float | None] = []
    sockets = [connect(edge_server) for _ in range(100)]
    threads = [
        threading.Thread(
            target=lambda s=s, n=n: closed.append((trickle if n % 2 else idle)(s, stop))
        )
        for n, s in enumerate(sockets)
    ]
    for thread in threads:
        thread.start()
    latencies = []
    while any(thread.is_alive() for thread in threads):
        began = time.monotonic()
        assert edge_server.get("/health/live").status_code == 200
        latencies.append(time.monotonic() - began)
        time.sleep(0.05)
    for sock in sockets:
        sock.close()
    assert len(closed) == 100
    assert None not in closed, (
        f"{closed.count(None)} slow clients still connected after {bound + 3:.0f} s"
    )
    assert max(c for c in closed if c is not None) <= bound
    assert len(latencies) >= 10
    assert max(latencies) < 1.0


# --- defect 11: uploads --------------------------------------------------------------------------


def upload_head(length: int) -> bytes:
    return (
        "POST /api/v1/data/packs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_an_upload_announced_over_the_limit_is_refused_before_its_body(
    edge_server: LiveServer,
) -> None:
    with connect(edge_server) as sock:
        began = time.monotonic()
        sock.sendall(upload_head(UPLOAD_LIMIT_MB * (1 << 20) + 1))  # and not one byte of body
        answer = read_answer(sock)
    assert answer.status == 413
    assert time.monotonic() - began < BODY_TIMEOUT  # answered without waiting for the body
    assert "upload limit" in answer.error().message
    assert uploads_of(edge_server) == []


def test_an_upload_the_node_has_no_room_for_is_a_fault_of_the_node(
    edge_server: LiveServer,
) -> None:
    free = shutil.disk_usage(edge_server.data_dir).free
    with connect(edge_server) as sock:
        began = time.monotonic()
        sock.sendall(upload_head(free // 2))  # fits, but its import (3x the pack) would not
        answer = read_answer(sock)
    assert answer.status == 507, answer.body
    assert time.monotonic() - began < BODY_TIMEOUT
    detail = answer.error()
    assert (detail.code, detail.reason) == ("insufficient_storage", "disk-full")
    assert "free disk space" in detail.message
    assert_no_node_path(detail.message, edge_server.data_dir)
    assert uploads_of(edge_server) == []


def test_an_upload_cut_short_is_a_bad_request_with_its_reason_and_logged(
    edge_server: LiveServer,
) -> None:
    with connect(edge_server) as sock:
        sock.sendall(upload_head(100_000) + b"x" * 1000)
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_WR)  # the client is done sending; it still reads the answer
        answer = read_answer(sock)
    assert answer.status == 400
    assert "cut short" in answer.error().message
    assert "1000 of the 100000" in answer.error().message
    record = request_line_of(edge_server, answer.headers["x-request-id"])
    assert record["status"] == 400
    assert "cut short" in str(record["error"])
    assert uploads_of(edge_server) == []


def test_an_upload_whose_client_vanished_is_logged_with_its_reason(edge_server: LiveServer) -> None:
    since = len(edge_server.log_lines)
    with connect(edge_server) as sock:
        sock.sendall(upload_head(100_000) + b"x" * 1000)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in edge_server.log_lines[since:] if line.startswith("{")]
        cut = [
            r for r in lines if r.get("msg") == "request" and r.get("path") == "/api/v1/data/packs"
        ]
        if cut:
            break
        time.sleep(0.05)
    assert [(r["status"], "cut short" in r["error"]) for r in cut] == [(400, True)]
    assert uploads_of(edge_server) == []


def test_an_upload_that_stalls_is_dropped_after_the_body_timeout(edge_server: LiveServer) -> None:
    with connect(edge_server) as sock:
        sock.sendall(upload_head(100_000) + b"x" * 1000)
        began = time.monotonic()
        answer = read_answer(sock)
        waited = time.monotonic() - began
    assert answer.status == 408
    assert BODY_TIMEOUT - 0.5 <= waited <= BODY_TIMEOUT + SLACK
    assert "APPLIANCE_BODY_TIMEOUT" in answer.error().message
    record = request_line_of(edge_server, answer.headers["x-request-id"])
    assert record["level"] == "warning"
    assert uploads_of(edge_server) == []


def test_sigterm_during_a_slow_upload_stops_the_server_within_its_grace(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> None:
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    with live_server(data_dir, signer.allowed_signers, workers=1) as server:
        stop_sending = threading.Event()

        def send_slowly() -> None:  # 1 MB/s, for longer than any grace
            with connect(server) as sock:
                sock.sendall(upload_head(100 << 20))
                try:
                    while not stop_sending.wait(0.0625):
                        sock.sendall(b"x" * 65536)
                except OSError:
                    pass

        sender = threading.Thread(target=send_slowly)
        sender.start()
        deadline = time.monotonic() + 10
        while not uploads_of(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert uploads_of(server), "the upload never started"
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        finally:
            stop_sending.set()
            sender.join()
        assert time.monotonic() - began <= 5 + SLACK + 2  # the grace, then the kill
    with live_server(data_dir, signer.allowed_signers, workers=1) as again:
        assert uploads_of(again) == []  # what the killed worker left is gone


# --- defect 13: HEAD, paths in errors, dead workers, a second serve, no data dir -----------------


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_answers_like_get_without_a_body(edge_server: LiveServer, path: str) -> None:
    with edge_server.client() as client:
        got = client.get(path)
        head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    for name in ("etag", "x-data-version", "content-encoding", "cache-control"):
        assert head.headers.get(name) == got.headers.get(name), name
    if "etag" in got.headers:
        assert head.headers["content-length"] == got.headers["content-length"]
    raw = raw_request(edge_server, "HEAD", path)  # and nothing follows the headers on the wire
    assert (raw.status, raw.body) == (200, b"")
    record = request_line_of(edge_server, raw.headers["x-request-id"])
    assert record["method"] == "HEAD"


@contextmanager
def store_locked(data_dir: Path) -> Iterator[None]:
    """Hold the store's writer lock, as an import under way does."""
    with (data_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_a_conflict_names_no_path_of_the_node(edge_server: LiveServer, good_pack: Path) -> None:
    admin = edge_server.admin()
    with store_locked(edge_server.data_dir):
        rollback = edge_server.post(
            "/api/v1/data/rollback", headers=admin, json={"version": "v0001"}
        )
        upload = edge_server.post(
            "/api/v1/data/packs", headers=admin, content=good_pack.read_bytes()
        )
    for answer in (rollback, upload):
        assert answer.status_code == 409, answer.text
        detail = msgspec.json.decode(answer.content, type=ErrorBody).error
        assert "locked" in detail.message
        assert "$APPLIANCE_DATA_DIR" in detail.message
        assert_no_node_path(detail.message, edge_server.data_dir)


@pytest.fixture
def pack_with_bad_page_data(good_pack: Path, tmp_path: Path, signer: Signer) -> Path:
    """A pack whose fact_forecast has one byte flipped inside its compressed pages."""
    parts = ForgedPack.read(good_pack)
    parts.manifest["pack_id"] = str(uuid.uuid4())
    data = parts.tables[table_member("fact_forecast")]
    parts.set_table("fact_forecast", data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    return parts.write(tmp_path / "pack_with_bad_page_data.pack", signer.key)


def test_a_refused_pack_names_no_path_of_the_node(
    edge_server: LiveServer, pack_with_bad_page_data: Path
) -> None:
    headers = edge_server.admin() | {"content-type": "application/octet-stream"}
    answer = edge_server.post(
        "/api/v1/data/packs", headers=headers, content=pack_with_bad_page_data.read_bytes()
    )
    assert answer.status_code == 422, answer.text
    detail = msgspec.json.decode(answer.content, type=ErrorBody).error
    assert detail.reason == "unreadable-table"
    assert_no_node_path(detail.message, edge_server.data_dir)


def version_gauge_workers(server: LiveServer) -> set[str]:
    """The workers /metrics reports an appliance_data_version_info for."""
    samples = parse_metrics(server.get("/metrics").text)
    return {
        labels["worker"] for name, labels, _ in samples if name == "appliance_data_version_info"
    }


def test_the_metrics_of_a_dead_worker_report_no_version(edge_server: LiveServer) -> None:
    pids = edge_server.worker_pids()
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while version_gauge_workers(edge_server) < {str(pid) for pid in pids}:
        assert time.monotonic() < deadline, "not every worker reported its version"
        time.sleep(0.2)
    victim = min(pids)
    requests_before = sum(
        v for n, _, v in parse_metrics(edge_server.get("/metrics").text)
        if n == "appliance_http_requests_total"
    )  # fmt: skip
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while victim in edge_server.worker_pids() or len(edge_server.worker_pids()) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    reported = version_gauge_workers(edge_server)
    assert str(victim) not in reported
    assert reported
    requests_after = sum(
        v for n, _, v in parse_metrics(edge_server.get("/metrics").text)
        if n == "appliance_http_requests_total"
    )  # fmt: skip
    assert requests_after >= requests_before  # the dead worker's requests still count


def serve(data_dir: Path, signers: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    argv = [str(BIN / "appliance"), "serve", "--data-dir", str(data_dir), "--signers", str(signers)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_a_second_serve_on_a_served_port_is_refused_in_one_line(
    edge_server: LiveServer, signer: Signer
) -> None:
    second = serve(edge_server.data_dir, signer.allowed_signers, edge_server.port)
    try:
        _, stderr = second.communicate(timeout=20)
    finally:
        second.kill()
    assert second.returncode == 2
    assert stderr.strip().count("\n") == 0, stderr
    assert f"127.0.0.1:{edge_server.port} is already in use" in stderr
    assert "--share-port" in stderr


def test_a_second_serve_shares_the_port_when_asked(edge_server: LiveServer, signer: Signer) -> None:
    with live_server(edge_server.data_dir, signer.allowed_signers, workers=1,
                     port=edge_server.port, args=("--share-port",)) as second:  # fmt: skip
        deadline = time.monotonic() + 20
        while not any('"worker started"' in line for line in second.log_lines):
            assert second.process.poll() is None, "\n".join(second.log_lines)
            assert time.monotonic() < deadline, "the second server never started a worker"
            time.sleep(0.1)


def test_two_servers_on_one_port_each_answer_by_their_run_name(
    edge_server: LiveServer, signer: Signer
) -> None:
    """What an upgrade's handover does: the healthcheck finds the new server among the two."""
    env = {"APPLIANCE_SHARE_PORT": "1", "APPLIANCE_RUN_NAME": "handover"}
    with live_server(edge_server.data_dir, signer.allowed_signers, workers=1,
                     port=edge_server.port, env=env) as second:  # fmt: skip
        # Its readiness above may have been the first server's answer: ask for it by name.
        deadline = time.monotonic() + 20
        while healthcheck(second.port, "handover").returncode != 0:
            assert time.monotonic() < deadline, "\n".join(second.log_lines[-20:])
            time.sleep(0.1)
        assert (edge_server.data_dir / "run" / "handover" / ".lock").is_file()
        answers = {json.loads(edge_server.get("/health/startup").content)["run"] for _ in range(64)}
        assert "handover" in answers and len(answers) == 2, answers  # the kernel shares the port
        first = (answers - {"handover"}).pop()
        checks = [healthcheck(second.port, name) for name in ("handover", first, "nobody")]
    assert [check.returncode for check in checks] == [0, 0, 1], [c.stdout for c in checks]
    assert "not 'nobody'" in checks[2].stdout
    assert healthcheck(edge_server.port, "handover").returncode == 1, "it stopped"


def healthcheck(port: int, run_name: str) -> subprocess.CompletedProcess[str]:
    """`python -m appliance.healthcheck /health/startup RUN` against 127.0.0.1:port."""
    argv = [str(BIN / "python"), "-m", "appliance.healthcheck", "/health/startup", run_name]
    environment = os.environ | {"APPLIANCE_PORT": str(port)}
    return subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60)


def test_an_upload_in_flight_survives_a_second_server_starting(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    """The new server of an upgrade starts beside the old one: the old one's upload stays."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    body = newer_pack.read_bytes()
    with live_server(data_dir, signer.allowed_signers, workers=1) as first:
        client = socket.create_connection(("127.0.0.1", first.port))
        with client:
            client.sendall(
                b"POST /api/v1/data/packs HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {len(body)}\r\n".encode()
                + b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                + body[: len(body) // 2]
            )
            deadline = time.monotonic() + 10
            while not list((data_dir / "run").glob("*/uploads/upload-*.pack")):
                assert time.monotonic() < deadline, "the upload never reached its temporary file"
                time.sleep(0.05)
            env = {"APPLIANCE_SHARE_PORT": "1", "APPLIANCE_RUN_NAME": "second"}
            with live_server(data_dir, signer.allowed_signers, workers=1, port=first.port,
                             env=env):  # fmt: skip
                while healthcheck(first.port, "second").returncode != 0:  # it has started
                    assert time.monotonic() < deadline + 20, "the second server never answered"
                    time.sleep(0.1)
                client.sendall(body[len(body) // 2 :])
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:400]


def test_serve_without_a_data_dir_names_it_and_creates_nothing(
    tmp_path: Path, signer: Signer
) -> None:
    missing = tmp_path / "no-such-store"
    done = run("appliance", "serve", "--data-dir", missing, "--signers", signer.allowed_signers,
               "--port", str(free_port()))  # fmt: skip
    assert done.returncode == 4
    assert done.stderr.strip() == (
        f"error: no data store at {missing} (an import creates it; set --data-dir or "
        "APPLIANCE_DATA_DIR)"
    )
    assert not missing.exists()


def test_an_existing_empty_data_dir_is_served_until_a_pack_arrives(
    tmp_path: Path, signer: Signer
) -> None:
    empty = tmp_path / "data"
    empty.mkdir()  # what the installer makes before any pack is imported
    with live_server(empty, signer.allowed_signers, workers=1) as server:
        assert server.get("/health/ready").status_code == 503
        assert server.get("/health/live").status_code == 200


def test_guessing_the_admin_token_on_a_read_route_costs_the_admin_budget(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> None:
    # With a viewer token set, read routes accept the admin token too: a wrong guess there must
    # not get the (much larger) read budget.
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    env = {
        "APPLIANCE_VIEWER_TOKEN": "viewer-token-for-the-guessing-test-0123",
        "APPLIANCE_RATE_LIMIT": "1000",
        "APPLIANCE_ADMIN_RATE_LIMIT": str(ADMIN_LIMIT),
    }
    with live_server(data_dir, signer.allowed_signers, env=env) as server:
        fresh_rate_window()
        source = own_address()
        statuses = [
            raw_request(server, "GET", "/api/v1/data/current", source=source,
                        headers=wrong_token()).status
            for _ in range(ADMIN_LIMIT + 1)
        ]  # fmt: skip
        assert statuses == [401] * ADMIN_LIMIT + [429]
        right = {"Authorization": "Bearer viewer-token-for-the-guessing-test-0123"}
        assert raw_request(server, "GET", "/api/v1/data/current", source=own_address(),
                           headers=right).status == 200  # fmt: skip
