"""Prometheus metrics that add up across the server's worker processes.

Each worker counts in memory (`WorkerMetrics`) and now and then writes a snapshot of its counts to
`<directory>/worker-<id>.json`. Whichever worker answers `GET /metrics` merges every snapshot with
its own live counts (`render_prometheus`), so the totals do not depend on which worker answers.
The snapshot of a worker that exited stays, so its requests keep counting toward the totals
(they never go back), but its gauges are left out: they describe a process that is gone (the
version it served, say). `appliance.data.run_layout.prepare_run_dir` drops every snapshot once, when
the server starts.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.data.run_layout import (
    DIR_MODE,
    SNAPSHOT_PREFIX,
    SNAPSHOT_SUFFIX,
    SNAPSHOT_TEMP_SUFFIX,
)

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUESTS_TOTAL = "appliance_http_requests_total"
REQUEST_DURATION = "appliance_http_request_duration_seconds"
DATA_VERSION_INFO = "appliance_data_version_info"
WORKER_READY = "appliance_worker_ready"
CACHE_HITS = "appliance_cache_hits_total"
CACHE_MISSES = "appliance_cache_misses_total"
RATE_LIMITED = "appliance_rate_limited_total"
EXPORTS_TOTAL = "appliance_exports_total"
EXPORT_BYTES = "appliance_export_bytes_total"
EXPORTS_REFUSED = "appliance_exports_refused_total"
PAIRS_COMPUTED = "appliance_revision_pairs_computed_total"
DEFAULT_HELP = {
    REQUESTS_TOTAL: "HTTP requests answered, by route template, method and status code.",
    REQUEST_DURATION: "Time taken to answer an HTTP request, by route template.",
    DATA_VERSION_INFO: "The data version each worker serves (always 1; version none before any).",
    WORKER_READY: "1 if this worker is ready (would answer GET /health/ready with 200), else 0.",
    CACHE_HITS: "Answers served from the shared response cache.",
    CACHE_MISSES: "Answers computed and added to the shared response cache.",
    RATE_LIMITED: "Requests refused with 429 by a rate limit, by kind (read or admin).",
    EXPORTS_TOTAL: "Exports ended, by table, format and outcome (complete, cut-off, failed, too-slow).",
    EXPORT_BYTES: "Bytes of exports sent, by table and format.",
    EXPORTS_REFUSED: "Exports refused because the export slots were taken, by reason.",
    PAIRS_COMPUTED: "Forecast revisions computed on demand (against another than the previous version).",
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_KEYS_KEPT = 4096  # series keys of (route, method, status) kept made, so counting is cheap

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
WORKER_LABEL = "worker"
SNAPSHOT_FORMAT = 1

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]

log = logging.getLogger(__name__)


class UnreadableSnapshot(ValueError):
    """A snapshot file that is torn, foreign or of another format."""


@dataclass
class HistogramCounts:
    """Observations per duration bucket (not cumulative; the last is above every bound) and their sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        """Count one observation; a value equal to a bound belongs to that bound's bucket (le)."""
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, value)] += 1
        self.total += value

    def add(self, other: HistogramCounts) -> None:
        """Add another worker's counts of the same series to these."""
        self.buckets = [
            mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)
        ]
        self.total += other.total

    def copy(self) -> HistogramCounts:
        """An independent copy."""
        return HistogramCounts(list(self.buckets), self.total)


@dataclass
class Snapshot:
    """One worker's counts, as its snapshot file holds them."""

    worker: str
    counters: dict[SeriesKey, float] = field(default_factory=dict)
    histograms: dict[SeriesKey, HistogramCounts] = field(default_factory=dict)
    gauges: dict[SeriesKey, float] = field(default_factory=dict)

    def copy(self) -> Snapshot:
        """An independent copy, safe to encode while the worker keeps counting."""
        histograms = {key: counts.copy() for key, counts in self.histograms.items()}
        return Snapshot(self.worker, dict(self.counters), histograms, dict(self.gauges))


class WorkerMetrics:
    """One worker process's counts, kept in memory and flushed to its own snapshot file.

    Create it in each worker after the fork, under an id no other live worker uses (the pid is a
    good one). A worker restarted under the id of an earlier one continues from that one's counts.
    """

    def __init__(self, directory: Path, worker_id: str) -> None:
        if not WORKER_ID.fullmatch(worker_id):
            msg = f"a worker id is letters, digits, '_', '.' and '-', not {worker_id!r}"
            raise ValueError(msg)
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.directory = directory
        self.worker_id = worker_id
        self.path = snapshot_path(directory, worker_id)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._request_keys: dict[tuple[str, str, int], tuple[SeriesKey, SeriesKey]] = {}
        self._counts = resumed_counts(self.path, worker_id)
        self._kinds = {name: COUNTER for name, _ in self._counts.counters}
        self._kinds |= {name: HISTOGRAM for name, _ in self._counts.histograms}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration; `route` is the route template, not the path."""
        keys = self._request_keys.get((route, method, status))
        if keys is None:
            keys = (
                (REQUESTS_TOTAL, (("method", method), ("route", route), ("status", str(status)))),
                (REQUEST_DURATION, (("route", route),)),
            )
            if len(self._request_keys) < REQUEST_KEYS_KEPT:
                self._request_keys[(route, method, status)] = keys
        counter, histogram = keys
        with self._lock:
            self._kinds.setdefault(REQUESTS_TOTAL, COUNTER)
            self._kinds.setdefault(REQUEST_DURATION, HISTOGRAM)
            counters = self._counts.counters
            counters[counter] = counters.get(counter, 0.0) + 1.0
            self._counts.histograms.setdefault(histogram, HistogramCounts()).observe(seconds)

    def inc(self, name: str, value: float = 1.0, /, **labels: str) -> None:
        """Add `value` to the counter `name` (e.g. appliance_cache_hits_total) with these labels."""
        if not (math.isfinite(value) and value >= 0):
            msg = f"a counter only goes up: cannot add {value} to {name}"
            raise ValueError(msg)
        key = series_key(name, labels)
        with self._lock:
            self._claim(name, COUNTER)
            self._counts.counters[key] = self._counts.counters.get(key, 0.0) + value

    def set_gauge(self, name: str, value: float, /, **labels: str) -> None:
        """Set this worker's gauge `name`; each worker's value is shown under its own worker label."""
        if WORKER_LABEL in labels:
            msg = f"the {WORKER_LABEL!r} label of gauge {name} is set by the metrics themselves"
            raise ValueError(msg)
        key = series_key(name, labels)
        with self._lock:
            self._claim(name, GAUGE)
            self._counts.gauges[key] = value

    def set_info(self, name: str, /, **labels: str) -> None:
        """Set the info gauge `name` to 1 with these labels, dropping its series of other labels."""
        key = series_key(name, labels)
        with self._lock:
            self._claim(name, GAUGE)
            gauges = self._counts.gauges
            for earlier in [k for k in gauges if k[0] == name and k != key]:
                del gauges[earlier]
            gauges[key] = 1.0

    def snapshot(self) -> Snapshot:
        """A copy of this worker's counts as they are now."""
        with self._lock:
            return self._counts.copy()

    def flush(self) -> None:
        """Write this worker's snapshot file so that readers see the previous one or this one whole."""
        # One flush at a time, so that an older snapshot never replaces a newer one.
        with self._flush_lock:
            write_snapshot(self.path, encode_snapshot(self.snapshot()))

    def _claim(self, name: str, kind: str) -> None:
        """Record that `name` is a metric of this kind; one name cannot have two kinds."""
        known = self._kinds.setdefault(name, kind)
        if known != kind:
            msg = f"{name} is a {known}, not a {kind}"
            raise ValueError(msg)


def series_key(name: str, labels: Mapping[str, object]) -> SeriesKey:
    """The key of one series: its metric name and its labels in name order, all checked."""
    if not METRIC_NAME.fullmatch(name):
        msg = f"not a Prometheus metric name: {name!r}"
        raise ValueError(msg)
    for label, value in labels.items():
        if not LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
            msg = f"not a label name this metric can use: {label!r}"
            raise ValueError(msg)
        if not isinstance(value, str):
            msg = f"label values are strings: {name}{{{label}={value!r}}}"
            raise TypeError(msg)
    return name, tuple(sorted((label, str(value)) for label, value in labels.items()))


def snapshot_path(directory: Path, worker_id: str) -> Path:
    """Where the worker `worker_id` writes its snapshot."""
    return directory / f"{SNAPSHOT_PREFIX}{worker_id}{SNAPSHOT_SUFFIX}"


def encode_snapshot(snapshot: Snapshot) -> bytes:
    """The snapshot file's content: JSON, series in a stable order."""
    document = {
        "format": SNAPSHOT_FORMAT,
        "counters": [
            [name, dict(labels), value]
            for (name, labels), value in sorted(snapshot.counters.items())
        ],
        "histograms": [
            [name, dict(labels), counts.buckets, counts.total]
            for (name, labels), counts in sorted(snapshot.histograms.items())
        ],
        "gauges": [
            [name, dict(labels), value] for (name, labels), value in sorted(snapshot.gauges.items())
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def decode_snapshot(data: bytes, worker: str) -> Snapshot:
    """Parse the snapshot file of `worker`; ValueError if it is torn, foreign or of another format."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        msg = "not a metrics snapshot of this format"
        raise UnreadableSnapshot(msg)
    return Snapshot(
        worker,
        counters=dict(map(value_row, section(document, "counters"))),
        histograms=dict(map(histogram_row, section(document, "histograms"))),
        gauges=dict(map(value_row, section(document, "gauges"))),
    )


def section(document: dict[str, Any], name: str) -> list[Any]:
    """One list of series of a snapshot document."""
    rows = document.get(name, [])
    if not isinstance(rows, list):
        msg = f"{name} is not a list"
        raise UnreadableSnapshot(msg)
    return rows


def value_row(row: object) -> tuple[SeriesKey, float]:
    """One counter or gauge of a snapshot file: [name, labels, value]."""
    match row:
        case [str(name), dict(labels), value]:
            return checked_key(name, labels), checked_number(value)
    msg = f"not a counter or gauge: {row!r}"
    raise UnreadableSnapshot(msg)


def histogram_row(row: object) -> tuple[SeriesKey, HistogramCounts]:
    """One histogram of a snapshot file: [name, labels, bucket counts, sum]."""
    match row:
        case [str(name), dict(labels), list(buckets), total]:
            return checked_key(name, labels), checked_histogram(buckets, total)
    msg = f"not a histogram: {row!r}"
    raise UnreadableSnapshot(msg)


def checked_key(name: str, labels: dict[str, Any]) -> SeriesKey:
    """A series key read from a file, held to the same rules as one recorded in memory."""
    try:
        return series_key(name, labels)
    except (TypeError, ValueError) as exc:
        raise UnreadableSnapshot(str(exc)) from exc


def checked_number(value: object) -> float:
    """A number read from a file (JSON true and false are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"not a number: {value!r}"
        raise UnreadableSnapshot(msg)
    return float(value)


def checked_histogram(buckets: list[Any], total: object) -> HistogramCounts:
    """Histogram counts read from a file: one non-negative whole count per bucket, and a sum."""
    if len(buckets) != len(DURATION_BUCKETS) + 1 or not all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in buckets
    ):
        msg = f"not a count for each of the {len(DURATION_BUCKETS) + 1} buckets: {buckets!r}"
        raise UnreadableSnapshot(msg)
    return HistogramCounts(list(buckets), checked_number(total))


def write_snapshot(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (temporary file + rename), readable by the owner only."""
    # No fsync: snapshots only matter while this server run lasts (prepare_run_dir drops them at
    # start), and an fsync every flush could stall a worker's event loop on slow storage.
    fd, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=SNAPSHOT_TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def resumed_counts(path: Path, worker: str) -> Snapshot:
    """The counters and histograms of an earlier worker with the same id, so totals never go back."""
    try:
        earlier = decode_snapshot(path.read_bytes(), worker)
    except FileNotFoundError:
        return Snapshot(worker)
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("starting metrics from zero: cannot read %s: %s", path, exc)
        return Snapshot(worker)
    return Snapshot(worker, earlier.counters, earlier.histograms)


def read_snapshots(directory: Path, skip: str | None = None) -> list[Snapshot]:
    """Every readable worker snapshot in `directory` except that of worker `skip`."""
    snapshots = []
    for path in sorted(directory.glob(f"{SNAPSHOT_PREFIX}*{SNAPSHOT_SUFFIX}")):
        worker = path.name.removeprefix(SNAPSHOT_PREFIX).removesuffix(SNAPSHOT_SUFFIX)
        if worker == skip or not WORKER_ID.fullmatch(worker):
            continue
        try:
            snapshots.append(decode_snapshot(path.read_bytes(), worker))
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("leaving out metrics snapshot %s: %s", path, exc)
    return snapshots


def worker_alive(worker: str) -> bool:
    """Whether the worker of this id still runs: ids that are pids are checked, others assumed so."""
    if not worker.isdigit():
        return True
    pid = int(worker)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the workers run as one user: this pid is another user's process now
    try:
        # An exited worker its parent has not reaped yet is a zombie: it still has a pid.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc to tell
    return stat.rpartition(")")[2].split()[0] != "Z"


def without_dead_gauges(snapshot: Snapshot) -> Snapshot:
    """The snapshot as it counts in the totals: a worker that exited keeps only its counters."""
    if not snapshot.gauges or worker_alive(snapshot.worker):
        return snapshot
    return Snapshot(snapshot.worker, snapshot.counters, snapshot.histograms)


def merge_snapshots(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Counters and histograms summed over the workers; gauges kept apart under a worker label."""
    totals = Snapshot(worker="")
    kinds: dict[str, str] = {}
    # Workers in a fixed order, so that float sums come out the same on every answer.
    for snapshot in sorted(snapshots, key=lambda snapshot: snapshot.worker):
        for key, value in snapshot.counters.items():
            if kinds.setdefault(key[0], COUNTER) == COUNTER:
                totals.counters[key] = totals.counters.get(key, 0.0) + value
        for key, counts in snapshot.histograms.items():
            if kinds.setdefault(key[0], HISTOGRAM) == HISTOGRAM:
                totals.histograms.setdefault(key, HistogramCounts()).add(counts)
        for (name, labels), value in snapshot.gauges.items():
            if kinds.setdefault(name, GAUGE) == GAUGE:
                worker_labels = dict(labels) | {WORKER_LABEL: snapshot.worker}
                totals.gauges[name, tuple(sorted(worker_labels.items()))] = value
    return totals


def render_prometheus(
    directory: Path,
    live: WorkerMetrics | None = None,
    help_texts: dict[str, str] | None = None,
    node: Snapshot | None = None,
) -> str:
    """Every worker's metrics merged, in the Prometheus text format 0.0.4 (serve with CONTENT_TYPE).

    `live` is the answering worker: its current counts stand in for its snapshot file, and it
    flushes them first, so that a later answer by another worker never shows a smaller total
    (Prometheus would take the drop for a counter reset). `node` holds series that describe the
    node as a whole (its build, its store), read at this answer: shown as they are, with no
    worker label.
    """
    snapshots = read_snapshots(directory, skip=None if live is None else live.worker_id)
    snapshots = [without_dead_gauges(snapshot) for snapshot in snapshots]
    if live is not None:
        snapshots.append(live.snapshot())
        try:
            live.flush()
        except OSError as exc:
            log.warning("cannot write metrics snapshot %s: %s", live.path, exc)
    totals = merge_snapshots(snapshots)
    if node is not None:
        add_node_series(totals, node)
    lines = exposition_lines(totals, DEFAULT_HELP | (help_texts or {}))
    return "".join(f"{line}\n" for line in lines)


def add_node_series(totals: Snapshot, node: Snapshot) -> None:
    """Add the node's counters and gauges to the workers' totals; a name the workers use is left out."""
    taken = {name for name, _ in (*totals.counters, *totals.gauges, *totals.histograms)}
    for key, value in node.counters.items():
        if key[0] in taken:
            log.warning("leaving out node metric %s: a worker metric has that name", key[0])
        else:
            totals.counters[key] = value
    for key, value in node.gauges.items():
        if key[0] in taken:
            log.warning("leaving out node metric %s: a worker metric has that name", key[0])
        else:
            totals.gauges[key] = value


def exposition_lines(totals: Snapshot, help_texts: Mapping[str, str]) -> Iterator[str]:
    """The lines of the text format: per metric, in name order, HELP and TYPE, then its samples."""
    families: dict[str, tuple[str, list[str]]] = {}
    for (name, labels), value in sorted(totals.counters.items()):
        families.setdefault(name, (COUNTER, []))[1].append(sample_line(name, labels, value))
    for (name, labels), value in sorted(totals.gauges.items()):
        families.setdefault(name, (GAUGE, []))[1].append(sample_line(name, labels, value))
    for (name, labels), counts in sorted(totals.histograms.items()):
        families.setdefault(name, (HISTOGRAM, []))[1].extend(histogram_lines(name, labels, counts))
    for name in sorted(families):
        kind, samples = families[name]
        if name in help_texts:
            yield f"# HELP {name} {escape_help(help_texts[name])}"
        yield f"# TYPE {name} {kind}"
        yield from samples


def histogram_lines(name: str, labels: Labels, counts: HistogramCounts) -> Iterator[str]:
    """The cumulative le buckets of one histogram series, then its _sum and _count."""
    cumulative = 0
    for bound, count in zip((*DURATION_BUCKETS, math.inf), counts.buckets, strict=True):
        cumulative += count
        yield sample_line(f"{name}_bucket", (*labels, ("le", format_value(bound))), cumulative)
    yield sample_line(f"{name}_sum", labels, counts.total)
    yield sample_line(f"{name}_count", labels, cumulative)


def sample_line(name: str, labels: Labels, value: float) -> str:
    """One sample: name{label="value",...} value."""
    if not labels:
        return f"{name} {format_value(value)}"
    pairs = ",".join(f'{label}="{escape_label_value(text)}"' for label, text in labels)
    return f"{name}{{{pairs}}} {format_value(value)}"


def format_value(value: float) -> str:
    """A sample value or bound as the text format writes it: 3, 0.25, +Inf, NaN."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label_value(text: str) -> str:
    """A label value escaped for the text format: backslash, double quote and newline."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """A HELP text escaped for the text format: backslash and newline."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")
