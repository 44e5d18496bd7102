"""A worker's readiness: the checks behind /health/ready, its Prometheus gauge and systemd's READY.

Shared by the health controller (which answers for the worker a request reaches) and the
runtime's metrics thread (which records every worker's own readiness under its worker label,
so that a scrape shows each worker, whichever one answers it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from appliance.audit.compliance import ComplianceReport, loaded_ml_modules
from appliance.data.history import TrailCheck
from appliance.data.store import DataStore
from server.schemas import Check, Health

if TYPE_CHECKING:
    from server.runtime import Runtime

_trail_checks: dict[tuple[int, int, int], TrailCheck] = {}


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


def required_checks(rt: Runtime, compliance: ComplianceReport) -> list[Check]:
    """The checks a worker must pass to be ready: started, data loaded, no ML near the server."""
    return [
        Check("started", rt.started, "worker started" if rt.started else "starting"),
        data_check(rt),
        Check(
            "no_ml",
            compliance.ok,
            "no ML library importable or loaded"
            if compliance.ok
            else f"ML libraries found: {', '.join(sorted({*compliance.importable, *compliance.loaded}))}",
        ),
    ]


def compliance_now(rt: Runtime) -> ComplianceReport:
    """Importable was looked up once at start (it walks sys.path); loaded is checked every time."""
    return ComplianceReport(rt.compliance.importable, loaded_ml_modules())


def worker_ready(rt: Runtime) -> bool:
    """Whether this worker would answer /health/ready with 200 (the audit trail is not read)."""
    return all(check.ok for check in required_checks(rt, compliance_now(rt)))


def health_of(rt: Runtime) -> Health:
    """Every check: the required ones, and the audit trail's, reported but never acted on."""
    handle = rt.data.current()
    compliance = compliance_now(rt)
    trail = trail_check(rt.store)
    checks = [
        *required_checks(rt, compliance),
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
