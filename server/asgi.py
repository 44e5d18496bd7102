"""The ASGI entry point Granian loads in each worker: the app behind the request edge."""

from __future__ import annotations

from appliance.handover import leave_on_signal
from server.app import create_app
from server.middleware import RequestEdge
from server.runtime import Runtime

litestar_app = create_app()


def _runtime() -> Runtime | None:
    runtime: Runtime | None = getattr(litestar_app.state, "runtime", None)
    return runtime


app = RequestEdge(litestar_app, _runtime)
leave_on_signal()  # before a stop beside another server, this worker leaves the shared port
