"""Everything one worker holds open while it serves, built at startup and closed at shutdown."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from appliance.access.tokens import TokenStore, bootstrap_digests
from appliance.audit.compliance import ComplianceReport, check_compliance
from appliance.data.run_layout import DIR_MODE
from appliance.data.store import DataStore
from appliance.settings import ServerSettings
from server.cache import ResponseCache
from server.compared import ComparedVersions
from server.data import DataSource
from server.logs import JsonLog
from server.metrics import DATA_VERSION_INFO, WORKER_READY, WorkerMetrics
from server.ratelimit import SharedRateLimiter
from server.readiness import worker_ready
from server.tokens import TokenGate

if TYPE_CHECKING:
    from litestar import Litestar

RATE_WINDOW_SECONDS = 60.0
METRICS_FLUSH_SECONDS = 1.0


@dataclass
class Runtime:
    """The open resources of one worker process."""

    settings: ServerSettings
    store: DataStore
    data: DataSource
    cache: ResponseCache
    metrics: WorkerMetrics
    read_limiter: SharedRateLimiter
    admin_limiter: SharedRateLimiter
    compliance: ComplianceReport
    tokens: TokenGate
    compared: ComparedVersions
    worker: int = field(default_factory=os.getpid)
    started: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: ServerSettings) -> Runtime:
        """Open the store, the cache, the shared counters and the current version."""
        store = DataStore(settings.data_dir)
        folders = settings.folders
        folders.run.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        data = DataSource(store, settings.duckdb_memory, settings.duckdb_threads, folders)
        metrics = WorkerMetrics(folders.metrics, str(os.getpid()))
        runtime = cls(
            settings=settings,
            store=store,
            data=data,
            cache=ResponseCache(folders.cache, settings.cache_bytes),
            metrics=metrics,
            read_limiter=SharedRateLimiter(
                folders.read_limiter, settings.rate_limit, RATE_WINDOW_SECONDS
            ),
            admin_limiter=SharedRateLimiter(
                folders.admin_limiter, settings.admin_rate_limit, RATE_WINDOW_SECONDS
            ),
            compliance=check_compliance(),
            tokens=TokenGate(
                TokenStore(settings.data_dir),
                bootstrap_digests(settings.admin_token, settings.viewer_token),
                warn=lambda message: JsonLog(settings.log_level, os.getpid()).event(
                    "warning", message
                ),
            ),
            compared=ComparedVersions(
                folders, settings.duckdb_memory, settings.duckdb_threads, metrics
            ),
        )
        data.refresh()
        threading.Thread(target=runtime._flush_metrics, name="metrics-flush", daemon=True).start()
        threading.Thread(
            target=data.watch, args=(runtime._stop,), name="version-watch", daemon=True
        ).start()
        runtime.started = True
        return runtime

    def record_served_version(self) -> None:
        """Set this worker's gauges of what it serves now: appliance_data_version_info and
        appliance_worker_ready (a scrape shows every worker's, whichever worker answers it)."""
        handle = self.data.served
        self.metrics.set_info(DATA_VERSION_INFO, version=handle.vid if handle else "none")
        self.metrics.set_gauge(WORKER_READY, float(worker_ready(self)))

    def _flush_metrics(self) -> None:
        """Write this worker's counters for the others to read, every METRICS_FLUSH_SECONDS."""
        while not self._stop.wait(METRICS_FLUSH_SECONDS):
            # Here too, not only when this worker answers /metrics: its gauge follows a switch.
            self.record_served_version()
            self.metrics.flush()

    def close(self) -> None:
        """Release everything (worker shutdown)."""
        self._stop.set()
        self.metrics.flush()
        self.data.close()
        self.compared.close()
        self.cache.close()
        self.read_limiter.close()
        self.admin_limiter.close()


def runtime_of(app: Litestar) -> Runtime:
    """The worker's runtime, as the app's lifespan stored it."""
    runtime: Runtime = app.state.runtime
    return runtime
