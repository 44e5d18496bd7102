"""Exports: each gold table of a data version as CSV or Parquet, filtered, streamed.

`GET /api/v1/export/{table}.{csv|parquet}` exports the served version, or the one `?version=`
names; `item` (repeatable), `category`, `site`, `from` and `to` filter it. The answer is
streamed as DuckDB writes it (server/exports.py). Caps (server/export_slots.py) keep one
client address to one export at a time and the node to APPLIANCE_EXPORT_SLOTS at once.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any, cast

import anyio
import anyio.to_thread
from litestar import Controller, Request, Response, get
from litestar.exceptions import ClientException, HTTPException
from litestar.params import Parameter
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.status_codes import (
    HTTP_304_NOT_MODIFIED,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from appliance.data import store_layout
from appliance.errors import NodeFault, StoreError
from appliance.faults import os_fault
from server.data import check_unless_stamped
from server.export_slots import RETRY_SECONDS, ExportRefused, ExportSlots, SlotClaim
from server.exports import (
    EXPORT_PATH,
    EXPORT_TABLES,
    FORMATS,
    ITEM_ID,
    MAX_FILTER_LENGTH,
    MAX_ITEMS,
    ExportFailed,
    ExportFilter,
    ExportRequest,
    ExportStream,
    database_of,
)
from server.logs import JsonLog
from server.metrics import EXPORT_BYTES, EXPORTS_REFUSED, EXPORTS_TOTAL
from server.middleware import HEAD_REQUEST, REQUEST_PROBLEM
from server.responses import error_responses, matches, require_version, runtime
from server.runtime import Runtime
from server.security import require_viewer

SINGLE_PARAMETERS = ("version", "category", "site", "from", "to")
PARAMETERS = frozenset({*SINGLE_PARAMETERS, "item"})
EXPORT_ERRORS = error_responses(400, 401, 404, 414, 429, 503)
ISO_DAY = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
)  # not the week or basic forms fromisoformat takes
SEND_TIMEOUT_SECONDS = 60.0  # a client that takes nothing for this long loses its export
ItemFilter = Annotated[
    list[str] | None,
    Parameter(description=f"Item id (repeat for several, at most {MAX_ITEMS}).", required=False),
]
TextFilter = Annotated[str | None, Parameter(description="Exact value, 1-64 characters.")]
DayFilter = Annotated[str | None, Parameter(description="YYYY-MM-DD, inclusive.")]


class ExportError(HTTPException):
    """A refused export, with the reason code the error envelope carries."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            detail=detail, status_code=status, extra={"reason": reason}, headers=headers
        )


def bad(reason: str, detail: str) -> ExportError:
    """A 400 for a query the export does not take."""
    return ExportError(ClientException.status_code, reason, detail)


def parse_target(file_name: str) -> tuple[str, str]:
    """The (table, format) of `fact_forecast.csv`; 404 for a table or format we do not export."""
    table, dot, suffix = file_name.rpartition(".")
    if not dot or suffix not in FORMATS:
        known = " or ".join(f".{name}" for name in FORMATS)
        raise ExportError(404, "unknown_format", f"exports are {known} files, not {file_name!r}")
    if table not in EXPORT_TABLES:
        known = ", ".join(EXPORT_TABLES)
        raise ExportError(404, "unknown_table", f"no table {table!r} to export (tables: {known})")
    return table, suffix


def parse_day(name: str, text: str) -> date:
    """A `from` or `to` day: exactly YYYY-MM-DD, a real day."""
    day = None
    if ISO_DAY.fullmatch(text):
        with contextlib.suppress(ValueError):
            day = date.fromisoformat(text)
    if day is None:
        raise bad("bad_parameter", f"{name!r} must be a day as YYYY-MM-DD, not {text[:40]!r}")
    return day


def parse_text(name: str, text: str) -> str:
    """A category or site: 1-64 characters, no control characters."""
    if not 1 <= len(text) <= MAX_FILTER_LENGTH or not text.isprintable():
        msg = f"{name!r} must be 1-{MAX_FILTER_LENGTH} printable characters"
        raise bad("bad_parameter", msg)
    return text


def parse_query(request: Request[Any, Any, Any], table: str) -> tuple[str | None, ExportFilter]:
    """The version named (if any) and the filter; 400 naming the first thing wrong."""
    query = request.query_params
    unknown = sorted(set(query.keys()) - PARAMETERS)
    if unknown:
        allowed = ", ".join(sorted(PARAMETERS))
        raise bad("unknown_parameter", f"unknown query parameter {unknown[0]!r} (takes {allowed})")
    for name in SINGLE_PARAMETERS:
        if len(query.getall(name, [])) > 1:
            raise bad("repeated_parameter", f"query parameter {name!r} given more than once")
    items = query.getall("item", [])
    if len(items) > MAX_ITEMS:
        raise bad("bad_parameter", f"at most {MAX_ITEMS} 'item' parameters, not {len(items)}")
    for item in items:
        if ITEM_ID.fullmatch(item) is None:
            msg = f"'item' must be an item id (1-64 of A-Z a-z 0-9 . _ -), not {item[:80]!r}"
            raise bad("bad_parameter", msg)
    version = query.get("version")
    if version is not None and store_layout.version_number(version) is None:
        example = store_layout.version_id(7)
        raise bad("bad_parameter", f"'version' must be a version id like {example}")
    category, site = query.get("category"), query.get("site")
    start_text, end_text = query.get("from"), query.get("to")
    start = parse_day("from", start_text) if start_text is not None else None
    end = parse_day("to", end_text) if end_text is not None else None
    if start is not None and end is not None and start > end:
        raise bad("from_after_to", f"'from' ({start}) is after 'to' ({end})")
    if (start or end) and not EXPORT_TABLES[table].dated:
        dated = ", ".join(name for name, t in EXPORT_TABLES.items() if t.dated)
        raise bad("filter_not_applicable", f"{table} has no date: 'from' and 'to' apply to {dated}")
    chosen = ExportFilter(
        items=tuple(sorted(set(items))),
        category=parse_text("category", category) if category is not None else None,
        site=parse_text("site", site) if site is not None else None,
        start=start,
        end=end,
    )
    return version, chosen


class ExportTooSlow(Exception):
    """An export ran out of APPLIANCE_EXPORT_SECONDS: the stream is cut off."""


class ExportRun:
    """One export being streamed, and what is told of it once it ends (log line, metrics)."""

    def __init__(
        self,
        rt: Runtime,
        log: JsonLog | None,
        export: ExportStream,
        claim: SlotClaim,
        state: dict[str, Any],
    ) -> None:
        self.rt, self.log, self.export, self.claim, self.state = rt, log, export, claim, state
        self.rid = str(state.get("request_id", ""))
        self.started = time.perf_counter()
        self.deadline = self.started + rt.settings.export_seconds  # APPLIANCE_EXPORT_SECONDS
        self.first = b""
        self.outcome = "cut-off"  # the client went away, or stopped taking the bytes
        self.problem: str | None = None
        self._finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file, chunk by chunk, the first one read before the answer started."""
        yield self.first
        while True:
            if time.perf_counter() > self.deadline:
                self.too_slow()
                await self.finish()
                raise ExportTooSlow(self.problem)
            try:
                chunk = await anyio.to_thread.run_sync(self.export.read)
            except ExportFailed as exc:
                # The status line is gone: cutting the connection off is how the client learns.
                self.outcome, self.problem = "failed", str(exc)
                self.state[REQUEST_PROBLEM] = f"the export failed part-way: {exc}"
                await self.finish()
                raise
            if not chunk:
                # Before the last chunk goes out: a client that asks again at once is not
                # refused for an export that is still ending.
                self.outcome = "complete"
                await self.finish()
                return
            yield chunk

    def too_slow(self) -> None:
        """Record that the export ran out of its time (the client took the bytes too slowly)."""
        seconds = self.rt.settings.export_seconds
        self.outcome = "too-slow"
        self.problem = (
            f"the export was cut off after {seconds} s (APPLIANCE_EXPORT_SECONDS), "
            f"{self.export.bytes:,} bytes sent: the client took them too slowly"
        )
        self.state[REQUEST_PROBLEM] = self.problem

    def send_timeout(self) -> float:
        """How long the next send may wait: the idle limit, or less near the deadline."""
        return max(0.0, min(SEND_TIMEOUT_SECONDS, self.deadline - time.perf_counter()))

    async def finish(self) -> None:
        """Stop DuckDB, remove the pipe, free the caps, and log the export: once."""
        if self._finished:
            return
        self._finished = True
        try:
            await anyio.to_thread.run_sync(self.export.close)
        finally:
            self.claim.release()
        request = self.export.request
        labels = {"table": request.table.name, "format": request.format.suffix}
        self.rt.metrics.inc(EXPORTS_TOTAL, outcome=self.outcome, **labels)
        self.rt.metrics.inc(EXPORT_BYTES, float(self.export.bytes), **labels)
        if self.log is not None:
            self.log.event(
                "info" if self.outcome == "complete" else "warning", "export",
                request_id=self.rid, data_version=request.vid, table=request.table.name,
                format=request.format.suffix, filter=request.filter.key(), outcome=self.outcome,
                rows=self.export.rows if self.outcome == "complete" else None,
                bytes=self.export.bytes, seconds=round(time.perf_counter() - self.started, 3),
                **({"error": self.problem} if self.problem else {}),
            )  # fmt: skip


class FinishingApp:
    """An ASGI answer that runs `finish` however the answer ends: sent, cut off, or never sent."""

    def __init__(self, inner: ASGIResponse, run: ExportRun) -> None:
        self.inner, self.run = inner, run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def bounded_send(message: Any) -> None:
            try:
                with anyio.fail_after(self.run.send_timeout()):
                    await send(message)
            except TimeoutError:
                if time.perf_counter() >= self.run.deadline:
                    self.run.too_slow()
                raise

        try:
            await self.inner(scope, receive, bounded_send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.run.finish()


class ExportAnswer(Stream):
    """The streamed file of an export run."""

    def __init__(self, run: ExportRun, headers: dict[str, str], media_type: str) -> None:
        super().__init__(run.chunks(), headers=headers, media_type=media_type)
        self.run = run

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        inner = super().to_asgi_response(*args, **kwargs)
        return cast("ASGIResponse", FinishingApp(inner, self.run))


def resolve_version(rt: Runtime, vid: str | None) -> tuple[str, dict[str, Any]]:
    """The version to export and its metadata: the served one, or `vid` once checked."""
    served = rt.data.served
    if vid is None or (served is not None and served.vid == vid):
        with rt.data.lease() as leased:
            handle = require_version(leased)
            return handle.vid, dict(handle.meta)
    try:
        known = {version.vid: version for version in rt.store.versions()}
    except StoreError as exc:
        raise ExportError(HTTP_503_SERVICE_UNAVAILABLE, "store", str(exc)) from exc
    version = known.get(vid)
    if version is None:
        msg = f"no data version {vid} on this node (GET /api/v1/data/versions lists them)"
        raise ExportError(404, "version_not_found", msg)
    check_unless_stamped(rt.settings.folders, vid, version.path)  # VersionDamaged: 503
    report = version.report
    meta = {"dataset_id": report.dataset_id, "model_version": report.model_version}
    return vid, meta


def start_export(export: ExportStream) -> bytes:
    """Open and start the export, and read its first chunk (in a worker thread)."""
    export.open()
    try:
        export.start()
        return export.read()
    except BaseException:
        export.close()
        raise


class ExportsController(Controller):
    """Gold tables of a data version as files."""

    path = EXPORT_PATH
    tags = ["exports"]  # noqa: RUF012
    guards = [require_viewer]  # noqa: RUF012

    @get(
        "/{file_name:str}",
        operation_id="export_table",
        summary="A gold table of a data version as CSV or Parquet (streamed)",
        description=(
            "`file_name` is `<table>.csv` or `<table>.parquet`, the table one of "
            f"{', '.join(EXPORT_TABLES)}. Filters combine with AND; several `item`s with OR. "
            "`from`/`to` apply to the tables with a date. The ETag depends on the version, "
            "the table, the format and the filter; If-None-Match answers 304."
        ),
        responses=EXPORT_ERRORS,
    )
    async def export_table(
        self,
        request: Request[Any, Any, Any],
        file_name: Annotated[str, Parameter(description="`<table>.csv` or `<table>.parquet`.")],
        version: Annotated[
            str | None, Parameter(description="Version id (v0007); default: the served one.")
        ] = None,
        item: ItemFilter = None,
        category: TextFilter = None,
        site: TextFilter = None,
        start: Annotated[
            str | None, Parameter(query="from", description="First day, YYYY-MM-DD.")
        ] = None,
        end: Annotated[
            str | None, Parameter(query="to", description="Last day, YYYY-MM-DD.")
        ] = None,
    ) -> Response[Any]:
        table, suffix = parse_target(file_name)
        named, chosen = parse_query(request, table)
        rt = runtime(request)
        vid, meta = await anyio.to_thread.run_sync(resolve_version, rt, named)
        state = request.scope.setdefault("state", {})
        state.update(data_version=vid, dataset_id=meta.get("dataset_id"),
                     model_version=meta.get("model_version"))  # fmt: skip
        export_request = ExportRequest(vid, EXPORT_TABLES[table], FORMATS[suffix], chosen)
        etag = export_request.etag()
        headers = {
            "x-data-version": vid,
            "etag": etag,
            "cache-control": "no-cache",
            "vary": "authorization",
            "content-disposition": export_request.content_disposition(
                str(meta.get("dataset_id", "data"))
            ),
        }
        if matches(request, etag):
            return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        media_type = export_request.format.media_type
        if state.get(HEAD_REQUEST):
            return Stream(iter(()), headers=headers, media_type=media_type)
        claim = claim_slot(rt, request)
        export = ExportStream(
            export_request, database_of(rt.store.versions_dir, vid), rt.settings.folders.exports
        )
        try:
            first = await anyio.to_thread.run_sync(start_export, export)
        except BaseException as exc:
            # Whatever ended it (a fault, or a cancel that came once the thread had started the
            # COPY): stop DuckDB and remove the pipe before the slot is free again.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(export.close)
            claim.release()
            if isinstance(exc, NodeFault | ExportFailed):  # the request was valid: the node's
                raise ExportError(HTTP_503_SERVICE_UNAVAILABLE, exc.reason, str(exc)) from exc
            raise
        run = ExportRun(rt, getattr(request.app.state, "log", None), export, claim, state)
        run.first = first
        return ExportAnswer(run, headers, media_type)


def claim_slot(rt: Runtime, request: Request[Any, Any, Any]) -> SlotClaim:
    """The export caps' locks for this client, or 429 / 503 with Retry-After."""
    client = request.client.host if request.client else "unknown"
    slots = ExportSlots(rt.settings.folders.exports, rt.settings.export_slots)
    try:
        return slots.claim(client)
    except ExportRefused as exc:
        reason = "export_in_progress" if exc.per_client else "exports_busy"
        rt.metrics.inc(EXPORTS_REFUSED, reason=reason)
        status = HTTP_429_TOO_MANY_REQUESTS if exc.per_client else HTTP_503_SERVICE_UNAVAILABLE
        raise ExportError(status, reason, str(exc), {"retry-after": str(RETRY_SECONDS)}) from exc
    except OSError as exc:
        fault = os_fault(exc, "taking an export slot in the run folder")
        raise ExportError(HTTP_503_SERVICE_UNAVAILABLE, fault.reason, str(fault)) from exc
