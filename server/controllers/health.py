"""Health probes and Prometheus metrics of a worker."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from server.logs import JsonLog
from server.metrics import CONTENT_TYPE, render_prometheus
from server.node_metrics import NODE_HELP, RepeatedWarnings, node_series
from server.readiness import health_of
from server.responses import runtime
from server.schemas import Health

_metrics_warnings = RepeatedWarnings()


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
