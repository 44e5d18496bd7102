"""The healthcheck: a 200 is healthy, and with a run name only that run's 200 is."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import cycle

import pytest

from appliance.healthcheck import RUN_TRIES, probe


class Answers:
    """What the fake server answers, in turn: (status, body) pairs."""

    def __init__(self) -> None:
        self.turns: Iterator[tuple[int, bytes]] = cycle([(200, b'{"status": "ok"}')])
        self.asked = 0

    def next(self) -> tuple[int, bytes]:
        self.asked += 1
        return next(self.turns)


@pytest.fixture
def server() -> Iterator[tuple[int, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.next()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def runs(*names: str) -> Iterator[tuple[int, bytes]]:
    return cycle([(200, json.dumps({"status": "ok", "run": name}).encode()) for name in names])


def test_a_200_is_healthy_whoever_answers(server: tuple[int, Answers]) -> None:
    port, answers = server
    answers.turns = runs("old", "new")
    assert probe(port, "/health/startup") == (True, f"http://127.0.0.1:{port}/health/startup: 200")
    assert answers.asked == 1


def test_the_run_asked_for_is_found_among_two_sharing_the_port(server: tuple[int, Answers]) -> None:
    port, answers = server
    answers.turns = runs("old", "old", "old", "new")
    healthy, _ = probe(port, "/health/startup", run="new")
    assert healthy
    assert answers.asked == 4  # a new connection each time, until the new server answered


def test_a_run_that_never_answers_is_unhealthy_after_its_tries(server: tuple[int, Answers]) -> None:
    port, answers = server
    answers.turns = runs("old", "new")
    healthy, reason = probe(port, "/health/startup", run="nobody")
    assert not healthy
    assert reason.endswith("answered by run 'new', not 'nobody'")
    assert answers.asked == RUN_TRIES


def test_a_server_older_than_run_names_is_not_the_run_asked_for(
    server: tuple[int, Answers],
) -> None:
    port, _ = server
    healthy, reason = probe(port, "/health/startup", run="unit")
    assert not healthy and "answered by run '', not 'unit'" in reason


def test_a_503_is_unhealthy_at_once(server: tuple[int, Answers]) -> None:
    port, answers = server
    answers.turns = cycle([(503, b'{"status": "starting", "run": "new"}')])
    assert probe(port, "/health/startup", run="new") == (
        False,
        f"http://127.0.0.1:{port}/health/startup: 503",
    )
    assert answers.asked == 1
