"""The metrics to alert on that describe the node rather than one worker, read at every scrape.

The build that serves, how old the served data is, how imports ended (counted by the importer,
which runs outside the server, in a file of the store), whether the store is intact, and whether
the answering worker is ready. docs/admin-guide.md lists them with the example alert rules
(docs/examples/appliance-alerts.yml).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from appliance import REVISION_ENV, __version__
from appliance.data.import_counts import UnreadableCounts, read_counts
from appliance.packs.result_pack import parse_timestamp
from server.metrics import Snapshot, series_key
from server.runtime import Runtime
from server.schemas import Health

BUILD_INFO = "appliance_build_info"
DATA_GENERATED = "appliance_data_generated_timestamp_seconds"
IMPORTS_TOTAL = "appliance_imports_total"
IMPORT_LAST = "appliance_import_last_timestamp_seconds"
IMPORT_COUNTS_READABLE = "appliance_import_counts_readable"
STORE_INTEGRITY = "appliance_store_integrity_ok"
READY = "appliance_ready"
UNKNOWN_REVISION = "unknown"

NODE_HELP = {
    BUILD_INFO: "The appliance's version and the source revision its image was built from (always 1).",
    DATA_GENERATED: "When the ML workstation generated the data served now (Unix time).",
    IMPORTS_TOTAL: "Result pack imports, by result (imported, rejected, fault) and reason code.",
    IMPORT_LAST: "When an import last ended with this result and reason (Unix time).",
    IMPORT_COUNTS_READABLE: "0 if the importer's counts file of the store is damaged (a node fault), else 1.",
    STORE_INTEGRITY: "1 if this part of the data store matches its checksums or hash chain, 0 if damaged.",
    READY: "1 if the answering worker is ready (GET /health/ready answers 200), else 0.",
}


class RepeatedWarnings:
    """The last warning given, so that a scrape every few seconds does not log the same one again."""

    def __init__(self) -> None:
        self.last: str | None = None

    def to_log(self, message: str | None) -> str | None:
        """`message` if it should be logged now; None (all is well again) forgets the last one."""
        repeated = message == self.last
        self.last = message
        return None if repeated else message


def revision(env: Mapping[str, str] = os.environ) -> str:
    """The source revision the server image was built from, as its environment names it."""
    return env.get(REVISION_ENV, "").strip() or UNKNOWN_REVISION


def node_series(rt: Runtime, health: Health) -> tuple[Snapshot, str | None]:
    """The node's series as they are now, and a fault of the node to log if one was found."""
    node = Snapshot(worker="")
    gauge(node, BUILD_INFO, 1.0, version=__version__, revision=revision())
    handle = rt.data.current()
    if handle is not None:
        try:
            generated = parse_timestamp(handle.report.generated_at).timestamp()
        except ValueError:
            pass  # checked at import; readiness reports a version that would not open
        else:
            gauge(node, DATA_GENERATED, generated)
    problem = add_import_counts(node, rt)
    trail = next(check for check in health.checks if check.name == "audit_trail")
    gauge(node, STORE_INTEGRITY, float(rt.data.damaged is None), check="current_version")
    gauge(node, STORE_INTEGRITY, float(trail.ok), check="audit_trail")
    gauge(node, READY, float(health.status == "ok"))
    return node, problem


def add_import_counts(node: Snapshot, rt: Runtime) -> str | None:
    """The importer's counts, from its file in the store; a damaged one shows as readable 0."""
    path = rt.store.import_counts_file
    try:
        outcomes = read_counts(path)
    except (UnreadableCounts, OSError) as exc:
        gauge(node, IMPORT_COUNTS_READABLE, 0.0)
        return f"node fault: cannot read the import counts {path}: {exc}"
    gauge(node, IMPORT_COUNTS_READABLE, 1.0)
    for outcome in outcomes:
        labels = {"result": outcome.result, "reason": outcome.reason}
        node.counters[series_key(IMPORTS_TOTAL, labels)] = float(outcome.count)
        gauge(node, IMPORT_LAST, outcome.last_at.timestamp(), **labels)
    return None


def gauge(node: Snapshot, name: str, value: float, /, **labels: str) -> None:
    """Set one gauge series of the node."""
    node.gauges[series_key(name, labels)] = value
