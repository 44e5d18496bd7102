"""Health probes and Prometheus metrics of a worker."""

from __future__ import annotations

import os
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from appliance.audit.compliance import ComplianceReport, loaded_ml_modules
from appliance.data.history import TrailCheck
from appliance.data.store import DataStore
from server.logs import JsonLog
from server.metrics import CONTENT_TYPE, render_prometheus
from server.node_metrics import NODE_HELP, RepeatedWarnings, node_series
from server.responses import runtime
from server.runtime import Runtime
from server.schemas import Check, Health

_trail_checks: dict[tuple[int, int, int], TrailCheck] = {}
_metrics_warnings = RepeatedWarnings()


def trail_check(store: DataStore) -> TrailCheck:
    """The audit trail's check, redone only when the trail or its head changed."""
    stamps = []
    for path in (store.trail.path, store.trail.head_path):
        try:
            info = path.stat()
            stamps += [info.st_size, info.st_mtime_ns]
        except FileNotFoundError:
            stamps += [-1, -1]
    key = (stamps[0], stamps[1], stamps[3])
    if key not in _trail_checks:
        _trail_checks.clear()
        _trail_checks[key] = store.verify_history()
    return _trail_checks[key]


def data_check(rt: Runtime) -> Check:
    """Whether this worker serves a version, and if not (or not the current one), why."""
    handle = rt.data.current()
    damaged = rt.data.damaged
    if damaged is not None:
        # A refused new version leaves the one served before it in service, undamaged.
        serving = f"; still serving {handle.vid}" if handle and handle.damage is None else ""
        return Check("data_version", False, f"{damaged}{serving}")
    if handle is None:
        return Check("data_version", False, rt.data.last_error or "no data version imported yet")
    if rt.data.last_error is not None:
        # Still serving, but not what the store says is current (or `current` is broken).
        return Check("data_version", False, f"serving {handle.vid}, but {rt.data.last_error}")
    return Check("data_version", True, f"serving {handle.vid}")


def health_of(rt: Runtime) -> Health:
    """The checks that decide readiness: data loaded, no ML anywhere near the server."""
    handle = rt.data.current()
    # Importable was looked up once at start (it walks sys.path); loaded is checked every time.
    compliance = ComplianceReport(rt.compliance.importable, loaded_ml_modules())
    trail = trail_check(rt.store)
    checks = [
        Check("started", rt.started, "worker started" if rt.started else "starting"),
        data_check(rt),
        Check(
            "no_ml",
            compliance.ok,
            "no ML library importable or loaded"
            if compliance.ok
            else f"ML libraries found: {', '.join(sorted({*compliance.importable, *compliance.loaded}))}",
        ),
        # Reported, never acted on: a damaged trail is evidence to examine, not a reason to stop.
        Check("audit_trail", trail.ok, trail.describe(), required=False),
    ]
    ok = all(check.ok for check in checks if check.required)
    return Health(
        status="ok" if ok else "unavailable",
        worker=os.getpid(),
        version=handle.vid if handle else None,
        checks=checks,
        ml_importable=list(compliance.importable),
        ml_loaded=list(compliance.loaded),
    )


class HealthController(Controller):
    """Liveness, startup and readiness probes, and /health for people."""

    path = "/health"
    tags = ["health"]  # noqa: RUF012

    @get("/", operation_id="get_health", summary="Every check, always 200 (read `status`)")
    async def get_health(self, request: Request[Any, Any, Any]) -> Health:
        return health_of(runtime(request))

    @get("/live", operation_id="get_liveness", summary="The worker process answers")
    async def get_live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/startup", operation_id="get_startup", summary="The worker finished starting")
    async def get_startup(self, request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        rt = runtime(request)
        status = HTTP_200_OK if rt.started else HTTP_503_SERVICE_UNAVAILABLE
        # The run's name tells which of two servers sharing the port answered (an upgrade's gate).
        body = {"status": "ok" if rt.started else "starting", "run": rt.settings.run_name}
        return Response(body, status_code=status)

    @get("/ready", operation_id="get_readiness", summary="Data loaded and no ML: 200, else 503")
    async def get_ready(self, request: Request[Any, Any, Any]) -> Response[Health]:
        health = health_of(runtime(request))
        return Response(
            health,
            status_code=HTTP_200_OK if health.status == "ok" else HTTP_503_SERVICE_UNAVAILABLE,
        )


@get(
    "/metrics",
    operation_id="get_metrics",
    summary="Prometheus metrics, totals across all workers",
    tags=["health"],
)
async def get_metrics(request: Request[Any, Any, Any]) -> Response[str]:
    """Counters and histograms summed over every worker's snapshot; gauges per worker; the node's."""
    rt = runtime(request)
    node, problem = node_series(rt, health_of(rt))
    rt.record_served_version()
    warning = _metrics_warnings.to_log(problem)
    log: JsonLog | None = getattr(request.app.state, "log", None)
    if warning is not None and log is not None:
        log.event("warning", warning)
    text = render_prometheus(rt.metrics.directory, rt.metrics, NODE_HELP, node)
    # Litestar appends the charset to text/* types; CONTENT_TYPE has it already.
    return Response(text, media_type=CONTENT_TYPE.removesuffix("; charset=utf-8"))
