"""The edge of every HTTP request: id, limits, security headers, metrics and the log line.

It wraps the whole Litestar app (not a route), so unmatched paths and errors get the same
headers, counting and logging as everything else.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from server.logs import JsonLog
from server.runtime import Runtime
from server.schemas import ErrorBody, ErrorDetail

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

MAX_QUERY_BYTES = 2048
MAX_PATH_BYTES = 1024
ADMIN_PREFIX = "/api/v1/data/"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


def request_id_of(scope: Scope) -> str:
    """The id this request carries in logs, headers and error bodies."""
    state = scope.setdefault("state", {})
    rid: str = state.get("request_id", "")
    return rid


def error_response(status: int, code: str, message: str, request_id: str) -> bytes:
    """The one error envelope, encoded."""
    return msgspec.json.encode(ErrorBody(ErrorDetail(status, code, message, request_id)))


class RequestEdge:
    """ASGI wrapper applying per-request policy around the app."""

    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime | None]) -> None:
        self.app = app
        self.runtime = runtime
        self.log: JsonLog | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = self.runtime()
        if runtime is None:  # not started yet: nothing to count against
            await self.app(scope, receive, send)
            return
        if self.log is None:
            self.log = JsonLog(runtime.settings.log_level, runtime.worker)
        started = time.perf_counter()
        request_id = os.urandom(8).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        refusal = self._refusal(scope, runtime)
        try:
            if refusal is None:
                await self.app(scope, receive, send_with_headers)
            else:
                await self._refuse(refusal, request_id, send_with_headers)
        finally:
            self._observe(scope, runtime, status, time.perf_counter() - started, request_id)

    def _refusal(self, scope: Scope, runtime: Runtime) -> tuple[int, str, str, float] | None:
        """(status, code, message, retry_after) when the request is refused before routing."""
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            return 414, "uri_too_long", f"query string longer than {MAX_QUERY_BYTES} bytes", 0.0
        if len(scope.get("raw_path") or scope["path"].encode()) > MAX_PATH_BYTES:
            return 414, "uri_too_long", f"path longer than {MAX_PATH_BYTES} bytes", 0.0
        path: str = scope["path"]
        if not path.startswith("/api/"):
            return None
        client = (scope.get("client") or ("unknown", 0))[0]
        admin = scope["method"] not in ("GET", "HEAD") and path.startswith(ADMIN_PREFIX)
        limiter = runtime.admin_limiter if admin else runtime.read_limiter
        allowed, retry_after = limiter.hit(f"{'admin' if admin else 'read'}:{client}")
        if allowed:
            return None
        runtime.metrics.inc("appliance_rate_limited_total", kind="admin" if admin else "read")
        return 429, "rate_limited", "too many requests from this address; slow down", retry_after

    @staticmethod
    async def _refuse(refusal: tuple[int, str, str, float], request_id: str, send: Send) -> None:
        status, code, message, retry_after = refusal
        body = error_response(status, code, message, request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        headers.append((b"cache-control", b"no-store"))
        if status == 429:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _observe(
        self, scope: Scope, runtime: Runtime, status: int, seconds: float, request_id: str
    ) -> None:
        route = scope.get("path_template") or "unmatched"
        runtime.metrics.observe_request(route, scope["method"], status, seconds)
        state = scope.get("state", {})
        if self.log is not None:
            self.log.event(
                "info",
                "request",
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 3),
                data_version=state.get("data_version"),
                dataset_id=state.get("dataset_id"),
                model_version=state.get("model_version"),
            )
