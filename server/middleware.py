"""The edge of every HTTP request: id, path, limits, body reads, headers, metrics and the log line.

It wraps the whole Litestar app (not a route), so unmatched paths and errors get the same
headers, counting and logging as everything else. It rewrites the path to its one canonical
spelling first, so that the rate limits, the routing, the log line and the metrics all see the
same path: `//api/v1/data/refresh`, `/api/v1/./data/refresh`, `/api/v1/data%2Frefresh` and
`/api/v1/data/refresh/` are one request, limited as one.
"""

from __future__ import annotations

import math
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import HTTP_408_REQUEST_TIMEOUT

from appliance.access.tokens import TOKEN_PREFIX
from server.errors import error_envelope
from server.fast_path import Direct, FastPath
from server.logs import JsonLog
from server.metrics import RATE_LIMITED
from server.read_log import SLOW_SECONDS, SUCCESS, ReadTally
from server.runtime import Runtime

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

MAX_QUERY_BYTES = 2048
# A token in a URL ends up in browser history, proxies' logs and Referer headers: a query that
# names one, or carries a value with our tokens' prefix, is refused (and, as every query
# string, never logged).
TOKEN_PARAMETERS = frozenset({b"token", b"access_token", b"api_key", b"apikey", b"bearer"})
TOKEN_SHAPE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")
TOKEN_SHAPE_BYTES = re.compile(TOKEN_SHAPE.pattern.encode())
REDACTED_TARGET = "<a URL with a token, not logged>"
TOKEN_IN_URL = "a token goes in the Authorization header (Bearer), never in the URL"  # noqa: S105
MAX_PATH_BYTES = 1024
API_PREFIX = "/api/"
READ_METHODS = ("GET", "HEAD")
HEAD_REQUEST = "head_request"  # scope["state"] key: the GET being answered is a HEAD
REQUEST_PROBLEM = "problem"  # scope["state"] key: what went wrong after the answer started
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
# With HTTPS on, browsers are told to use nothing else for this node for a year (RFC 6797);
# over plain HTTP browsers ignore it, so it is not sent. A node that turns HTTPS off again stays
# unreachable from browsers that saw it until then (docs/admin-guide.md, "HTTPS").
TLS_SECURITY_HEADERS = [*SECURITY_HEADERS, (b"strict-transport-security", b"max-age=31536000")]


def request_id_of(scope: Scope) -> str:
    """The id this request carries in logs, headers and error bodies."""
    state = scope.setdefault("state", {})
    rid: str = state.get("request_id", "")
    return rid


def canonical_path(path: str) -> str:
    """The one spelling of a (percent-decoded) path: no empty or `.` segments, `..` resolved, no trailing `/`."""
    if path.startswith("/") and "//" not in path and "/." not in path and not path.endswith("/"):
        return path  # already canonical: the usual case, found without splitting
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments)


def limit_class(path: str, method: str) -> str | None:
    """Which rate limit a request counts against: "admin", "read", or None (not the API).

    Decided on the canonical path without regard to case: `/API/v1/...` matches no route, but
    it must not be a way around the limits either. Every request that may change something
    counts as admin, whatever its path, so no spelling of an admin route gets the read budget.
    """
    if not path.casefold().startswith(API_PREFIX):
        return None
    return "read" if method in READ_METHODS else "admin"


class BodyStalled(HTTPException):
    """The client stopped sending the request body for longer than APPLIANCE_BODY_TIMEOUT."""

    status_code = HTTP_408_REQUEST_TIMEOUT


class BodyCutShort(ClientException):
    """The client closed the connection before sending the whole request body."""


class RequestBody:
    """The `receive` of one request, bounding the wait for each part of the body.

    The bound applies only until the body is complete: after that, `receive` only waits for the
    client to disconnect, which may take as long as the answer does.
    """

    def __init__(self, receive: Receive, timeout: float, expected: int | None) -> None:
        self._receive = receive
        self.timeout = timeout
        self.expected = expected
        self.received = 0
        self.complete = False
        self.problem: str | None = None

    async def __call__(self) -> Message:
        if self.complete:
            return await self._receive()
        try:
            with anyio.fail_after(self.timeout):
                message = await self._receive()
        except TimeoutError:
            self.complete = True
            self.problem = (
                f"the request body stalled: no bytes for {self.timeout:g} s after "
                f"{self.received} bytes (APPLIANCE_BODY_TIMEOUT)"
            )
            raise BodyStalled(detail=self.problem) from None
        if message["type"] == "http.disconnect":
            self.complete = True
            of = "" if self.expected is None else f" of the {self.expected} announced"
            self.problem = (
                f"the request body was cut short: the client closed the connection after "
                f"{self.received}{of} bytes"
            )
            raise BodyCutShort(detail=self.problem)
        self.received += len(message.get("body", b""))
        self.complete = not message.get("more_body", False)
        return message


def content_length(scope: Scope) -> int | None:
    """The Content-Length the client announced, if it sent a usable one."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def carries_a_token(path: str, query: bytes) -> bool:
    """Whether the URL holds something shaped like our tokens, or names a token parameter."""
    if TOKEN_SHAPE.search(path):
        return True
    if not query:
        return False
    decoded = unquote_to_bytes(query.replace(b"+", b" "))
    if TOKEN_SHAPE_BYTES.search(decoded):
        return True
    return any(pair.partition(b"=")[0].lower() in TOKEN_PARAMETERS for pair in decoded.split(b"&"))


class RequestEdge:
    """ASGI wrapper applying per-request policy around the app."""

    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime | None]) -> None:
        self.app = app
        self.runtime = runtime
        self.log: JsonLog | None = None
        self.fast: FastPath | None = None
        self.reads: ReadTally | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._at_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime = self.runtime()
        if runtime is None:  # not started yet: nothing to count against
            await self.app(scope, receive, send)
            return
        if self.log is None:
            self.log = JsonLog(runtime.settings.log_level, runtime.worker)
            self.fast = FastPath(runtime) if runtime.settings.fast_path else None
            self.reads = ReadTally(runtime.settings.log_reads)
        started = time.perf_counter()
        request_id = os.urandom(8).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        scope["path"] = canonical_path(scope["path"])
        method: str = scope["method"]
        if method == "HEAD":
            scope["method"] = "GET"  # answered as a GET would be, without the body (RFC 9110)
            scope["state"][HEAD_REQUEST] = True  # so a handler may skip making a body (exports)
        body = RequestBody(receive, runtime.settings.body_timeout, content_length(scope))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += TLS_SECURITY_HEADERS if runtime.settings.tls else SECURITY_HEADERS
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            elif method == "HEAD":  # a body, or a file to send (pathsend): none of it goes out
                more = message["type"] == "http.response.body" and message.get("more_body", False)
                message = {"type": "http.response.body", "body": b"", "more_body": more}
            await send(message)

        refusal = self._refusal(scope, method, runtime)
        if refusal is not None and refusal[1] == TOKEN_IN_URL:
            target = scope["path"] = REDACTED_TARGET  # its log line must not carry the token
        try:
            direct = self._fast_answer(scope) if refusal is None else None
            if direct is not None:
                await self._send(direct, scope, send_with_headers)
            elif refusal is None:
                await self.app(scope, body, send_with_headers)
            else:
                await self._refuse(refusal, request_id, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            problem = body.problem or scope["state"].get(REQUEST_PROBLEM)
            self._observe(scope, method, target, runtime, status, seconds, problem)

    @staticmethod
    def _refusal(scope: Scope, method: str, runtime: Runtime) -> tuple[int, str, float] | None:
        """(status, message, retry_after) when the request is refused before routing."""
        query: bytes = scope.get("query_string", b"")
        if len(query) > MAX_QUERY_BYTES:
            return 414, f"query string longer than {MAX_QUERY_BYTES} bytes", 0.0
        if len(scope.get("raw_path") or scope["path"].encode()) > MAX_PATH_BYTES:
            return 414, f"path longer than {MAX_PATH_BYTES} bytes", 0.0
        kind = limit_class(scope["path"], method)
        if kind is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            limiter = runtime.admin_limiter if kind == "admin" else runtime.read_limiter
            allowed, retry_after = limiter.hit(f"{kind}:{client}")
            if not allowed:
                runtime.metrics.inc(RATE_LIMITED, kind=kind)
                return 429, "too many requests from this address; slow down", retry_after
        if carries_a_token(scope["path"], query):
            return 400, TOKEN_IN_URL, 0.0
        return None

    def _fast_answer(self, scope: Scope) -> Direct | None:
        """The fast path's answer; a bug in it is logged and the framework answers instead."""
        if self.fast is None:
            return None
        try:
            return self.fast.answer(scope)
        except Exception as exc:  # noqa: BLE001 (never worse than the framework's own answer)
            if self.log is not None:
                self.log.event("error", "fast path failed; the framework answers", error=repr(exc),
                               request_id=request_id_of(scope), traceback=traceback.format_exc())  # fmt: skip
            return None

    def _at_shutdown(self, send: Send) -> Send:
        """`send` of the lifespan, writing the last `reads` line before the worker stops."""

        async def send_after_reads(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self.reads and self.log:
                line = self.reads.close()
                if line is not None:
                    self.log.event("info", "reads", **line)
            await send(message)

        return send_after_reads

    @staticmethod
    async def _send(direct: Direct, scope: Scope, send: Send) -> None:
        """An answer of the fast path, noted on the request as the framework notes its own."""
        scope["path_template"] = direct.route
        state = scope.setdefault("state", {})
        handle = direct.handle
        state["data_version"] = handle.vid
        state["dataset_id"] = handle.meta.get("dataset_id")
        state["model_version"] = handle.meta.get("model_version")
        start = {"type": "http.response.start", "status": direct.status, "headers": direct.headers}
        await send(start)
        await send({"type": "http.response.body", "body": direct.body})

    @staticmethod
    async def _refuse(refusal: tuple[int, str, float], request_id: str, send: Send) -> None:
        status, message, retry_after = refusal
        body = error_envelope(status, message, request_id)
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
        self,
        scope: Scope,
        method: str,
        target: str,
        runtime: Runtime,
        status: int,
        seconds: float,
        problem: str | None,
    ) -> None:
        route = scope.get("path_template") or "unmatched"
        runtime.metrics.observe_request(route, method, status, seconds)
        state = scope.get("state", {})
        if self.log is None or self.reads is None:
            return
        version = (state.get("data_version"), state.get("dataset_id"), state.get("model_version"))
        if (
            problem is None
            and status in SUCCESS
            and method in READ_METHODS
            and seconds < SLOW_SECONDS
        ):
            now = time.monotonic()
            ended = self.reads.count(now, method, route, status, seconds, version)
            if ended is not None:
                self.log.event("info", "reads", **ended)
            if not self.reads.in_full(now):
                return  # counted in the next `reads` line (server/read_log.py)
        path: str = scope["path"]
        # The path as the client sent it, when that is not the canonical one, so probes show.
        spelling = {"target": target[:MAX_PATH_BYTES]} if target != path else {}
        self.log.event(
            "warning" if problem else "info",
            "request",
            request_id=request_id_of(scope),
            method=method,
            path=path[:MAX_PATH_BYTES],
            **spelling,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            data_version=version[0],
            dataset_id=version[1],
            model_version=version[2],
            **({"error": problem} if problem else {}),
        )
