"""The Litestar application: read-only analytics API, admin actions, health and metrics."""

from __future__ import annotations

import re
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE

from appliance import __version__
from appliance.errors import VersionDamaged
from appliance.settings import ServerSettings, load_server_settings
from server import sd_notify
from server.controllers.data import DataController
from server.controllers.exports import ExportsController
from server.controllers.forecasts import ForecastsController
from server.controllers.health import HealthController, get_metrics
from server.controllers.inventory import InventoryController
from server.controllers.items import ItemsController
from server.controllers.revisions import RevisionsController
from server.errors import error_envelope
from server.logs import JsonLog
from server.runtime import Runtime

SOURCE_NAMES = {
    "query": "query parameter",
    "path": "path parameter",
    "header": "header",
    "cookie": "cookie",
    "body": "body field",
}
DASHBOARD_DIR = Path(__file__).parent / "frontend" / "dist"
DEFAULT_BODY_LIMIT = 1 << 20  # every body but an uploaded pack is a small JSON object
ABSOLUTE_PATH = re.compile(r"(?<![\w./-])/[^\s'\"():,;]+")


def request_id(request: Request[Any, Any, Any]) -> str:
    """The id the request edge gave this request."""
    rid: str = request.scope.get("state", {}).get("request_id", "")
    return rid


def public_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a client uses for a handler parameter (`from`, not the Python name `start`)."""
    handler = request.scope.get("route_handler")
    field = getattr(handler, "parsed_fn_signature", None)
    definition = getattr(field.parameters.get(key), "kwarg_definition", None) if field else None
    alias = getattr(definition, "query", None) or getattr(definition, "header", None)
    return str(alias or key)


def one_line(request: Request[Any, Any, Any], exc: HTTPException) -> str:
    """The error's message on one line; validation errors name the first bad parameter."""
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("key"):
            source = str(getattr(first.get("source"), "value", first.get("source") or "body"))
            where = SOURCE_NAMES.get(source, "value")
            name = public_name(request, first["key"])
            if source == "body" and name == "data":  # the whole body is missing or not an object
                return "the request body is missing or is not the JSON object this endpoint takes"
            return f"invalid {where} {name!r}: {first.get('message')}"
    return " ".join(str(exc.detail).split())


def without_node_paths(message: str, settings: ServerSettings | None) -> str:
    """`message` with no absolute path of this node in it: they tell a client how the node is laid out.

    The store's own paths become the setting that names them ($APPLIANCE_DATA_DIR/current), so
    the admin still knows where to look; any other path of this machine becomes <path>. A path
    whose first folder is not one of the root's (/api/v1/data/packs) is not a file: it stays.
    """
    if settings is not None:
        named = {settings.data_dir: "$APPLIANCE_DATA_DIR", settings.signers: "$APPLIANCE_SIGNERS"}
        for path, name in list(named.items()):
            named.setdefault(path.resolve(), name)
        for path, name in sorted(named.items(), key=lambda item: -len(str(item[0]))):
            if path.is_absolute() and str(path) != "/":
                message = message.replace(str(path), name)
    roots = {entry.name for entry in Path("/").iterdir()}

    def hidden(match: re.Match[str]) -> str:
        first = match[0].split("/")[1]
        return "<path>" if first in roots else match[0]

    return ABSOLUTE_PATH.sub(hidden, message)


def error_body(
    status: int, message: str, request: Request[Any, Any, Any], reason: str | None = None
) -> bytes:
    """The envelope every error uses."""
    return error_envelope(status, message, request_id(request), reason)


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Any HTTP error, in the one envelope."""
    reason = exc.extra.get("reason") if isinstance(exc.extra, dict) else None
    headers = {"cache-control": "no-store", **(exc.headers or {})}
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    message = without_node_paths(one_line(request, exc), runtime.settings if runtime else None)
    body = error_body(exc.status_code, message, request, reason)
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=headers)


def handle_damaged_version(request: Request[Any, Any, Any], exc: VersionDamaged) -> Response[bytes]:
    """The current version failed its checksums: 503, saying what to do, never its data."""
    body = error_body(HTTP_503_SERVICE_UNAVAILABLE, str(exc), request, "damaged")
    return Response(
        body,
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        media_type=MediaType.JSON,
        headers={"cache-control": "no-store"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A bug: log it with its traceback, answer 500 without details."""
    log: JsonLog | None = getattr(request.app.state, "log", None)
    if log is not None:
        log.event("error", "unhandled exception", request_id=request_id(request), error=repr(exc),
                  traceback=traceback.format_exc())  # fmt: skip
    body = error_body(
        HTTP_500_INTERNAL_SERVER_ERROR, "internal error; the server log has the details", request
    )
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR, media_type=MediaType.JSON)


def dashboard_routes() -> list[Router]:
    """The prebuilt dashboard: hashed assets cached for good, index.html revalidated each time."""
    if not (DASHBOARD_DIR / "index.html").is_file():
        return []  # a checkout without the built dashboard still serves the API
    return [
        create_static_files_router(
            path="/assets",
            directories=[DASHBOARD_DIR / "assets"],
            cache_control=CacheControlHeader(public=True, max_age=31_536_000, immutable=True),
            include_in_schema=False,
            name="dashboard-assets",
        ),
        create_static_files_router(
            path="/",
            directories=[DASHBOARD_DIR],
            html_mode=True,
            cache_control=CacheControlHeader(no_cache=True),
            include_in_schema=False,
            name="dashboard",
        ),
    ]


def create_app(settings: ServerSettings | None = None) -> Litestar:
    """The one app factory: settings from APPLIANCE_* unless given."""
    settings = settings or load_server_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = Runtime.open(settings)
        app.state.runtime = runtime
        app.state.log = JsonLog(settings.log_level, runtime.worker)
        handle = runtime.data.current()
        app.state.log.event(
            "info", "worker started", data_version=handle.vid if handle else None,
            dataset_id=handle.meta.get("dataset_id") if handle else None,
            model_version=handle.meta.get("model_version") if handle else None,
            ml_importable=list(runtime.compliance.importable),
        )  # fmt: skip
        # The version it started with: later versions are taken up without a restart, and
        # /health/ready (not systemd's status line) says which one each worker serves now.
        started = f"started with {handle.vid}" if handle else "started with no data imported yet"
        sd_notify.notify(sd_notify.READY, f"STATUS={started}")
        try:
            yield
        finally:
            sd_notify.notify(sd_notify.STOPPING, "STATUS=stopping")
            runtime.close()

    return Litestar(
        route_handlers=[
            ItemsController,
            ForecastsController,
            InventoryController,
            DataController,
            RevisionsController,
            ExportsController,
            HealthController,
            get_metrics,
            *dashboard_routes(),
        ],
        lifespan=[lifespan],
        exception_handlers={
            HTTPException: handle_http_error,
            VersionDamaged: handle_damaged_version,
            Exception: handle_unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="Offline analytics appliance API",
            version=__version__,
            description="Read-only access to precomputed forecasts, KPIs and inventory; admin actions on data versions.",
            path="/schema",
            # The document only: the HTML viewers fetch their scripts from CDNs a node cannot reach.
            render_plugins=[
                JsonRenderPlugin(path=["/", "/openapi.json"]),
                YamlRenderPlugin(path="/openapi.yaml"),
            ],
        ),
        request_max_body_size=DEFAULT_BODY_LIMIT,
    )
