"""Health probes and Prometheus metrics of a worker."""

from __future__ import annotations

import os
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from appliance.compliance import ComplianceReport, loaded_ml_modules
from server.metrics import CONTENT_TYPE, render_prometheus
from server.responses import runtime
from server.runtime import Runtime
from server.schemas import Check, Health


def health_of(rt: Runtime) -> Health:
    """The checks that decide readiness: data loaded, no ML anywhere near the server."""
    handle = rt.data.current()
    # Importable was looked up once at start (it walks sys.path); loaded is checked every time.
    compliance = ComplianceReport(rt.compliance.importable, loaded_ml_modules())
    checks = [
        Check("started", rt.started, "worker started" if rt.started else "starting"),
        Check(
            "data_version",
            handle is not None,
            f"serving {handle.vid}"
            if handle
            else rt.data.last_error or "no data version imported yet",
        ),
        Check(
            "no_ml",
            compliance.ok,
            "no ML library importable or loaded"
            if compliance.ok
            else f"ML libraries found: {', '.join(sorted({*compliance.importable, *compliance.loaded}))}",
        ),
    ]
    ok = all(check.ok for check in checks)
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
        started = runtime(request).started
        status = HTTP_200_OK if started else HTTP_503_SERVICE_UNAVAILABLE
        return Response({"status": "ok" if started else "starting"}, status_code=status)

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
    """Counters and histograms summed over every worker's snapshot; gauges per worker."""
    rt = runtime(request)
    handle = rt.data.current()
    rt.metrics.set_gauge(
        "appliance_data_version_info", 1.0, version=handle.vid if handle else "none"
    )
    text = render_prometheus(rt.metrics.directory, rt.metrics)
    # Litestar appends the charset to text/* types; CONTENT_TYPE has it already.
    return Response(text, media_type=CONTENT_TYPE.removesuffix("; charset=utf-8"))
