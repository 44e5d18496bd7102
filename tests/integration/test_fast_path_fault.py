"""A bug in the fast path costs speed, never an answer: the framework answers, the log says why.

In process (the app behind its request edge, driven over ASGI), because the fault is injected:
FastPath.answer is replaced by one that raises, as a bug would.

The request runs on an event loop in a thread of its own: the browser tests' session-wide
Playwright (sync API) keeps a loop running in the main thread for the whole session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from appliance.settings import load_server_settings
from server.app import create_app
from server.fast_path import FastPath
from server.middleware import RequestEdge
from server.runtime import Runtime
from tests.conftest import Signer, import_into

ITEM_PATH = "/api/v1/items/IT-0000001/timeseries"


async def one_request(edge: RequestEdge, app: Any, path: str) -> list[dict[str, Any]]:
    """Start the app's lifespan, send one GET through the edge, stop; the messages sent back."""
    lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await lifespan.put({"type": "lifespan.startup"})
    started: list[dict[str, Any]] = []

    async def lifespan_send(message: MutableMapping[str, Any]) -> None:
        started.append(dict(message))

    task = asyncio.create_task(edge({"type": "lifespan", "state": {}}, lifespan.get, lifespan_send))
    while not started:
        await asyncio.sleep(0.01)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1"), (b"accept-encoding", b"gzip")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080), "state": {},
    }  # fmt: skip
    await edge(scope, receive, send)
    await lifespan.put({"type": "lifespan.shutdown"})
    await task
    return sent


def run_apart(coroutine: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """asyncio.run in a thread of its own, whatever loop this thread is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


def test_a_raising_fast_path_is_answered_by_the_framework(
    tmp_path: Path,
    good_pack: Path,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import_into(tmp_path / "data", good_pack, signer)
    env = {
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
        "APPLIANCE_SIGNERS": str(signer.allowed_signers),
    }
    app = create_app(load_server_settings(env))

    def runtime() -> Runtime | None:
        found: Runtime | None = getattr(app.state, "runtime", None)
        return found

    def broken(self: FastPath, scope: Any) -> None:
        raise RuntimeError("a bug in the fast path")

    monkeypatch.setattr(FastPath, "answer", broken)
    sent = run_apart(one_request(RequestEdge(app, runtime), app, ITEM_PATH))
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"x-data-version"] == b"v0001"
    assert headers[b"content-encoding"] == b"gzip"
    records = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    failed = [r for r in records if r["msg"] == "fast path failed; the framework answers"]
    assert len(failed) == 1
    assert "a bug in the fast path" in failed[0]["error"]
    assert failed[0]["level"] == "error"
