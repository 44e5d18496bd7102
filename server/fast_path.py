"""The data answers the request edge sends itself, without going through the framework.

Most requests a node serves are reads whose answer is already made: an item's whole timeseries
or inventory (precomputed at import), a date range (a slice of the item's series), a page of
items (from the in-memory index), or an answer the worker made a moment ago (the summary, in
the response cache's memory). For those the edge answers at once: the framework's routing,
parameter parsing, guards and response objects cost ten times what the answer itself does.

Only a request whose answer is certain takes this path: GET or HEAD of one of these routes, a
valid token when the node asks for one, a known item, parameters spelled the one plain way
(`from=2026-01-01`, `limit=50`: nothing percent-encoded, repeated or unknown), and no header
the answer depends on given twice. Everything else — a bad token, an unknown item, no data, a
damaged version, a parameter the framework must judge — goes to the framework, which answers
as it always did (error envelope, 401, 404, 503). So this path changes speed only: the same
status, headers and bytes (tests/integration/test_fast_path.py sends each request both ways).
The edge around it still counts, limits, logs and adds the security headers, as for any request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from litestar._asgi.utils import is_valid_host  # the framework's own Host check, the same rule
from litestar.exceptions import ValidationException

from appliance.data.answers import INVENTORY, TIMESERIES, decompress
from appliance.errors import VersionDamaged
from server.bodies import decode_cursor, items_page, range_body
from server.data import VersionHandle
from server.item_index import SORTS
from server.metrics import CACHE_HITS
from server.responses import GZIP_VARIANT, JSON, etag_of, names_etag, takes_gzip
from server.runtime import Runtime
from server.security import bearer_of, may_read

Scope = MutableMapping[str, Any]
Header = tuple[bytes, bytes]

ITEM = r"([A-Za-z0-9._-]{1,64})"  # server.controllers.items.ITEM_ID_PATTERN
TIMESERIES_ROUTE = "/api/v1/items/{item_id}/timeseries"  # the framework's path_template of each
INVENTORY_ROUTE = "/api/v1/inventory/{item_id}"
ITEMS_ROUTE = "/api/v1/items"
SUMMARY_ROUTE = "/api/v1/forecasts/summary"
TIMESERIES_PATH = re.compile(rf"/api/v1/items/{ITEM}/timeseries")
INVENTORY_PATH = re.compile(rf"/api/v1/inventory/{ITEM}")
PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
PLAIN_LIMIT = re.compile(r"[1-9]\d{0,2}")
READ_PREFIXES = ("/api/v1/items", "/api/v1/inventory/", SUMMARY_ROUTE)
READ_HEADERS = (b"authorization", b"accept-encoding", b"if-none-match", b"host")
ITEMS_PARAMETERS = {"q": 100, "category": 64, "site": 64, "sort": 8, "cursor": 512, "limit": 3}
SUMMARY_PARAMETERS = {"category": 64, "site": 64}
JSON_TYPE = (b"content-type", JSON.encode())


@dataclass(frozen=True)
class Direct:
    """A whole answer for the edge to send: status, headers (without the edge's own) and body."""

    status: int
    headers: list[Header]
    body: bytes
    route: str
    handle: VersionHandle


class Unsure(Exception):
    """This request is for the framework to answer (a parameter to judge, a problem to report)."""


def read_headers(raw: Iterable[Header]) -> dict[bytes, str]:
    """The headers this path reads, each once; Unsure if one of them is given twice."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in READ_HEADERS:
            if name in found:
                raise Unsure
            found[name] = value.decode("latin-1")
    return found


def plain_parameters(query: bytes, allowed: dict[str, int]) -> dict[str, str]:
    """`query` as name -> value when every part is a known name, once, with a plain short value."""
    if not query:
        return {}
    if not query.isascii() or b"%" in query or b"+" in query:
        raise Unsure
    found: dict[str, str] = {}
    for part in query.decode("ascii").split("&"):
        name, equals, value = part.partition("=")
        longest = allowed.get(name)
        if not equals or not value or longest is None or name in found or len(value) > longest:
            raise Unsure
        found[name] = value
    return found


def plain_date(value: str | None) -> date | None:
    """A YYYY-MM-DD parameter as the framework reads it; Unsure for any other spelling."""
    if value is None:
        return None
    if not PLAIN_DATE.fullmatch(value):
        raise Unsure
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Unsure from None


def version_headers(handle: VersionHandle, etag: str) -> list[Header]:
    """server.responses.version_headers, in the order the framework sends them."""
    return [
        (b"x-data-version", handle.vid.encode()),
        (b"etag", etag.encode()),
        (b"cache-control", b"no-cache"),
        (b"vary", b"accept-encoding, authorization"),
    ]


def whole(headers: list[Header], body: bytes) -> list[Header]:
    """The headers of a 200 with a JSON body: the framework adds its type and length last."""
    return [*headers, JSON_TYPE, (b"content-length", str(len(body)).encode())]


class FastPath:
    """The edge's own answers for one worker (see the module's docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def answer(self, scope: Scope) -> Direct | None:
        """The answer to `scope`, or None when the framework is to answer it."""
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(READ_PREFIXES):
            return None
        try:
            headers = read_headers(scope.get("headers", ()))
            self._check_caller(headers)
            query: bytes = scope.get("query_string", b"")
            with self.runtime.data.lease() as handle:
                return None if handle is None else self._route(path, query, headers, handle)
        except (Unsure, VersionDamaged):
            return None

    def _check_caller(self, headers: dict[bytes, str]) -> None:
        """Unsure unless the framework would let the request through: Host and token."""
        host = headers.get(b"host")
        if host is not None and not is_valid_host(host.encode("latin-1")):
            raise Unsure
        if not may_read(bearer_of(headers.get(b"authorization", "")), self.runtime.tokens):
            raise Unsure  # the framework's 401, and the bad guess counted

    def _route(
        self, path: str, query: bytes, headers: dict[bytes, str], handle: VersionHandle
    ) -> Direct | None:
        if path == ITEMS_ROUTE:
            return self._items(path, query, headers, handle)
        if path == SUMMARY_ROUTE:
            return self._remembered(path, query, headers, handle)
        if match := TIMESERIES_PATH.fullmatch(path):
            item_id = match[1]
            if not query:
                return self._precomputed(
                    TIMESERIES_ROUTE, TIMESERIES, item_id, path, headers, handle
                )
            return self._range(item_id, path, query, headers, handle)
        if (match := INVENTORY_PATH.fullmatch(path)) and not query:
            return self._precomputed(INVENTORY_ROUTE, INVENTORY, match[1], path, headers, handle)
        return None

    def _precomputed(
        self,
        route: str,
        kind: str,
        item_id: str,
        path: str,
        headers: dict[bytes, str],
        handle: VersionHandle,
    ) -> Direct | None:
        """server.responses.precomputed_answer: the stored gzip body, or 304."""
        gzip = takes_gzip(headers.get(b"accept-encoding", ""))
        etag = etag_of(handle.vid, path, b"", GZIP_VARIANT if gzip else "")
        if names_etag(headers.get(b"if-none-match"), etag):
            return Direct(304, version_headers(handle, etag), b"", route, handle)
        stored = handle.answer(kind, item_id)
        if stored is None:
            return None  # an unknown item: the framework's 404
        out = version_headers(handle, etag)
        if gzip:
            out.append((b"content-encoding", b"gzip"))
        else:
            stored = decompress(stored)
        return Direct(200, whole(out, stored), stored, route, handle)

    def _range(
        self,
        item_id: str,
        path: str,
        query: bytes,
        headers: dict[bytes, str],
        handle: VersionHandle,
    ) -> Direct | None:
        """A date range of one item, sliced from its series."""
        if not (handle.has_series() and handle.items is not None):
            return None
        found = plain_parameters(query, {"from": 10, "to": 10})
        start, end = plain_date(found.get("from")), plain_date(found.get("to"))
        if start is not None and end is not None and start > end:
            return None  # the framework's 400
        return self._made(
            TIMESERIES_ROUTE,
            path,
            query,
            headers,
            handle,
            lambda: range_body(handle, item_id, start, end),
        )

    def _items(
        self, path: str, query: bytes, headers: dict[bytes, str], handle: VersionHandle
    ) -> Direct | None:
        """A page of items from the in-memory index."""
        if handle.items is None:
            return None
        found = plain_parameters(query, ITEMS_PARAMETERS)
        sort = found.get("sort", "item_id")
        limit = found.get("limit", "50")
        if sort not in SORTS or not PLAIN_LIMIT.fullmatch(limit) or int(limit) > 500:
            raise Unsure
        cursor = found.get("cursor")
        if cursor is not None:
            try:
                decode_cursor(cursor, sort)
            except ValidationException:
                raise Unsure from None  # the framework's 400, in its envelope
        q, category, site = found.get("q"), found.get("category"), found.get("site")
        return self._made(
            ITEMS_ROUTE,
            path,
            query,
            headers,
            handle,
            lambda: items_page(handle, q, category, site, sort, cursor, int(limit)),
        )

    def _remembered(
        self, path: str, query: bytes, headers: dict[bytes, str], handle: VersionHandle
    ) -> Direct | None:
        """An answer this worker made a moment ago and holds in memory (the summaries)."""
        plain_parameters(query, SUMMARY_PARAMETERS)
        etag = etag_of(handle.vid, path, query)
        if names_etag(headers.get(b"if-none-match"), etag):
            return Direct(304, version_headers(handle, etag), b"", SUMMARY_ROUTE, handle)
        body = self.runtime.cache.in_memory(f"{handle.vid}|{etag}")
        if body is None:
            return None  # made (or read from disk) by the framework, then remembered
        self.runtime.metrics.inc(CACHE_HITS)
        return Direct(200, whole(version_headers(handle, etag), body), body, SUMMARY_ROUTE, handle)

    @staticmethod
    def _made(
        route: str,
        path: str,
        query: bytes,
        headers: dict[bytes, str],
        handle: VersionHandle,
        make: Callable[[], bytes],
    ) -> Direct:
        """server.responses.fresh_answer: 304 if the client has it, else made now."""
        etag = etag_of(handle.vid, path, query)
        if names_etag(headers.get(b"if-none-match"), etag):
            return Direct(304, version_headers(handle, etag), b"", route, handle)
        body = make()
        return Direct(200, whole(version_headers(handle, etag), body), body, route, handle)
