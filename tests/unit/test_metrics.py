"""Worker metrics: snapshots merged into one Prometheus text exposition, whoever answers."""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import (
    DURATION_BUCKETS,
    REQUEST_DURATION,
    REQUESTS_TOTAL,
    Snapshot,
    WorkerMetrics,
    render_prometheus,
)

Sample = tuple[str, frozenset[tuple[str, str]]]

METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_LINE = re.compile(rf"(?P<name>{METRIC})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
HELP_OR_TYPE = re.compile(rf"# (?P<what>HELP|TYPE) (?P<name>{METRIC})(?: (?P<rest>.*))?")
KINDS = {"counter", "gauge", "histogram"}
UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def parse_labels(text: str) -> frozenset[tuple[str, str]]:
    """The label pairs of one sample, unescaped; fails the test on anything malformed."""
    pairs = []
    position = 0
    while position < len(text):
        match = LABEL_PAIR.match(text, position)
        assert match, f"malformed labels at {text[position:]!r}"
        value = re.sub(r"\\(.)", lambda escape: UNESCAPE[escape[1]], match[2])
        pairs.append((match[1], value))
        position = match.end()
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"a label twice in {text!r}"
    return frozenset(pairs)


def family_of(sample_name: str, kinds: dict[str, str]) -> str:
    """The metric a sample belongs to (histogram samples carry a suffix)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and kinds.get(base) == "histogram":
            return base
    return sample_name


def parse_exposition(text: str) -> dict[Sample, float]:
    """Check the text format 0.0.4 line by line and return every sample's value."""
    assert text == "" or text.endswith("\n")
    kinds: dict[str, str] = {}
    finished: set[str] = set()
    current = None
    samples: dict[Sample, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            header = HELP_OR_TYPE.fullmatch(line)
            assert header, f"malformed comment line {line!r}"
            if header["what"] == "TYPE":
                assert header["rest"] in KINDS, line
                assert header["name"] not in kinds, f"TYPE twice for {header['name']}"
                kinds[header["name"]] = header["rest"]
            continue
        sample = SAMPLE_LINE.fullmatch(line)
        assert sample, f"malformed sample line {line!r}"
        family = family_of(sample["name"], kinds)
        assert family in kinds, f"{sample['name']} comes before its TYPE line"
        if family != current:
            assert family not in finished, f"the samples of {family} are not together"
            if current is not None:
                finished.add(current)
            current = family
        key = (sample["name"], parse_labels(sample["labels"] or ""))
        assert key not in samples, f"{line!r} twice"
        samples[key] = float(sample["value"])
    return samples


def value_of(samples: dict[Sample, float], name: str, /, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels."""
    return samples[name, frozenset(labels.items())]


def rendered(directory: Path, live: WorkerMetrics | None = None) -> dict[Sample, float]:
    """The samples of /metrics as answered by `live` (or by no worker)."""
    return parse_exposition(render_prometheus(directory, live))


def requests_of(samples: dict[Sample, float], route: str = "/api/v1/timeseries/{item}") -> float:
    """How many GET requests of `route` answered 200 the exposition reports."""
    return value_of(samples, REQUESTS_TOTAL, route=route, method="GET", status="200")


def answer(worker: WorkerMetrics, times: int, route: str = "/api/v1/timeseries/{item}") -> None:
    """Record `times` GET requests of `route` that took 3 ms and answered 200."""
    for _ in range(times):
        worker.observe_request(route, "GET", 200, 0.003)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "metrics"


@pytest.fixture
def live_pid() -> Iterator[str]:
    """The pid of a process that runs for the whole test: a worker other than this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield str(process.pid)
    process.kill()
    process.wait()


def exited_worker(directory: Path, version: str, requests: int) -> str:
    """Run a worker process that counts `requests`, sets its version gauge, flushes and exits."""
    code = (
        "import os, sys; from pathlib import Path; from server.metrics import WorkerMetrics\n"
        "worker = WorkerMetrics(Path(sys.argv[1]), str(os.getpid()))\n"
        "for _ in range(int(sys.argv[3])):\n"
        "    worker.observe_request('/api/v1/timeseries/{item}', 'GET', 200, 0.003)\n"
        "worker.set_gauge('appliance_data_version_info', 1, version=sys.argv[2])\n"
        "worker.flush()\n"
        "print(os.getpid())\n"
    )
    argv = [sys.executable, "-c", code, str(directory), version, str(requests)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def test_counts_of_two_workers_add_up(directory: Path) -> None:
    first, second = WorkerMetrics(directory, "101"), WorkerMetrics(directory, "102")
    answer(first, 3)
    answer(second, 2)
    second.observe_request("/api/v1/versions", "GET", 404, 0.001)
    first.inc("appliance_cache_hits_total", kind="timeseries")
    second.inc("appliance_cache_hits_total", 2, kind="timeseries")
    first.flush()
    second.flush()
    samples = rendered(directory)
    assert requests_of(samples) == 5
    assert (
        value_of(samples, REQUESTS_TOTAL, route="/api/v1/versions", method="GET", status="404") == 1
    )
    assert value_of(samples, "appliance_cache_hits_total", kind="timeseries") == 3
    count = f"{REQUEST_DURATION}_count"
    assert value_of(samples, count, route="/api/v1/timeseries/{item}") == 5


def test_histogram_buckets_are_cumulative_and_count_every_observation(directory: Path) -> None:
    worker = WorkerMetrics(directory, "101")
    durations = [0.0005, 0.001, 0.003, 0.003, 0.2, 7.0]
    for seconds in durations:
        worker.observe_request("/api/v1/export", "GET", 200, seconds)
    samples = rendered(directory, live=worker)
    route = "/api/v1/export"
    buckets = [
        value_of(samples, f"{REQUEST_DURATION}_bucket", route=route, le=le)
        for le in [*(format(bound, "g") for bound in DURATION_BUCKETS), "+Inf"]
    ]
    assert buckets == sorted(buckets)
    by_le = dict(zip([*DURATION_BUCKETS, "+Inf"], buckets, strict=True))
    assert (by_le[0.001], by_le[0.005], by_le[0.25], by_le[2.5]) == (2, 4, 5, 5)
    assert by_le["+Inf"] == len(durations)
    assert value_of(samples, f"{REQUEST_DURATION}_count", route=route) == len(durations)
    assert value_of(samples, f"{REQUEST_DURATION}_sum", route=route) == pytest.approx(
        sum(durations)
    )


def test_the_answering_worker_counts_what_it_has_not_flushed_yet(directory: Path) -> None:
    first, second = WorkerMetrics(directory, "101"), WorkerMetrics(directory, "102")
    answer(second, 2)
    second.flush()
    answer(first, 3)
    assert requests_of(rendered(directory, live=first)) == 5
    answer(first, 4)
    assert requests_of(rendered(directory, live=first)) == 9


def test_totals_never_go_back_when_another_worker_answers(directory: Path) -> None:
    first, second = WorkerMetrics(directory, "101"), WorkerMetrics(directory, "102")
    answer(first, 3)
    answer(second, 2)
    first.flush()
    second.flush()
    answer(first, 10)
    seen = [requests_of(rendered(directory, live=first))]
    seen.append(requests_of(rendered(directory, live=second)))
    answer(second, 1)
    seen.append(requests_of(rendered(directory, live=first)))
    second.flush()
    seen.append(requests_of(rendered(directory, live=first)))
    assert seen == [15, 15, 15, 16]


def test_a_worker_that_exited_keeps_counting(directory: Path) -> None:
    gone = WorkerMetrics(directory, "101")
    answer(gone, 4)
    gone.flush()
    del gone
    survivor = WorkerMetrics(directory, "102")
    answer(survivor, 1)
    assert requests_of(rendered(directory, live=survivor)) == 5


def test_a_worker_restarted_under_the_same_id_continues_its_counts(directory: Path) -> None:
    before = WorkerMetrics(directory, "worker-0")
    answer(before, 4)
    before.set_gauge("appliance_data_version_info", 1, version="v0001")
    before.flush()
    after = WorkerMetrics(directory, "worker-0")
    answer(after, 1)
    samples = rendered(directory, live=after)
    assert requests_of(samples) == 5
    assert not [name for name, _ in samples if name == "appliance_data_version_info"]


GARBAGE_SNAPSHOTS = {
    "snapshot_cut_short": b'{"format":1,"counters":[["appliance_http_requests_total",{"ro',
    "snapshot_not_json": b"\x00\xff\xfe garbage",
    "snapshot_empty": b"",
    "snapshot_of_another_format": b'{"format":2,"counters":[]}',
    "snapshot_that_is_a_list": b"[1, 2, 3]",
    "snapshot_with_a_string_count": b'{"format":1,"counters":[["x_total",{},"7"]]}',
    "snapshot_with_a_boolean_count": b'{"format":1,"counters":[["x_total",{},true]]}',
    "snapshot_with_a_bad_metric_name": b'{"format":1,"counters":[["x-total",{},1]]}',
    "snapshot_with_a_number_label": b'{"format":1,"counters":[["x_total",{"a":1},1]]}',
    "snapshot_with_short_buckets": b'{"format":1,"histograms":[["h",{},[1,2],0.1]]}',
    "snapshot_with_counters_not_a_list": b'{"format":1,"counters":{"x_total":1}}',
    "snapshot_nested_too_deep": b"[" * 200_000,
}


@pytest.mark.parametrize("content", GARBAGE_SNAPSHOTS.values(), ids=GARBAGE_SNAPSHOTS.keys())
def test_an_unreadable_snapshot_is_left_out(
    directory: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    worker = WorkerMetrics(directory, "101")
    answer(worker, 2)
    worker.flush()
    (directory / "worker-broken.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="server.metrics"):
        samples = rendered(directory)
    assert requests_of(samples) == 2
    assert "worker-broken.json" in caplog.text
    assert not [name for name, _ in samples if name == "x_total"]


def test_label_values_are_escaped(directory: Path) -> None:
    worker = WorkerMetrics(directory, "101")
    awkward = 'say "hi"\\there\nnext line'
    worker.inc("appliance_cache_hits_total", kind=awkward)
    worker.flush()
    text = render_prometheus(directory)
    assert 'kind="say \\"hi\\"\\\\there\\nnext line"' in text
    assert value_of(parse_exposition(text), "appliance_cache_hits_total", kind=awkward) == 1


def test_help_texts_are_escaped_and_come_before_the_type(directory: Path) -> None:
    worker = WorkerMetrics(directory, "101")
    worker.inc("appliance_cache_hits_total")
    help_texts = {"appliance_cache_hits_total": "Answers from the cache\\memory,\nnot DuckDB."}
    lines = render_prometheus(directory, worker, help_texts).splitlines()
    assert lines[:3] == [
        "# HELP appliance_cache_hits_total Answers from the cache\\\\memory,\\nnot DuckDB.",
        "# TYPE appliance_cache_hits_total counter",
        "appliance_cache_hits_total 1",
    ]


def version_gauges(samples: dict[Sample, float]) -> dict[Sample, float]:
    """The appliance_data_version_info samples of an exposition."""
    return {key: value for key, value in samples.items() if key[0] == "appliance_data_version_info"}


def test_gauges_are_shown_per_worker_not_summed(directory: Path, live_pid: str) -> None:
    me = str(os.getpid())
    first, second = WorkerMetrics(directory, live_pid), WorkerMetrics(directory, me)
    first.set_gauge("appliance_data_version_info", 1, version="v0007")
    second.set_gauge("appliance_data_version_info", 1, version="v0008")
    second.set_gauge("appliance_data_version_info", 1, version="v0008")
    first.flush()
    samples = rendered(directory, live=second)
    assert version_gauges(samples) == {
        ("appliance_data_version_info", frozenset({("version", "v0007"), ("worker", live_pid)})): 1,
        ("appliance_data_version_info", frozenset({("version", "v0008"), ("worker", me)})): 1,
    }
    assert "# TYPE appliance_data_version_info gauge" in render_prometheus(directory)


def test_a_worker_that_exited_keeps_its_counts_but_not_its_gauges(directory: Path) -> None:
    gone = exited_worker(directory, "v0001", requests=4)
    survivor = WorkerMetrics(directory, str(os.getpid()))
    survivor.set_gauge("appliance_data_version_info", 1, version="v0002")
    answer(survivor, 1)
    samples = rendered(directory, live=survivor)
    assert requests_of(samples) == 5
    assert version_gauges(samples) == {
        (
            "appliance_data_version_info",
            frozenset({("version", "v0002"), ("worker", str(os.getpid()))}),
        ): 1,
    }
    assert (directory / f"worker-{gone}.json").is_file()  # kept, for its counts


def test_the_exposition_is_well_formed_and_the_same_every_time(
    directory: Path, live_pid: str
) -> None:
    first, second = WorkerMetrics(directory, live_pid), WorkerMetrics(directory, str(os.getpid()))
    for worker in (second, first):
        answer(worker, 2, "/api/v1/versions")
        answer(worker, 1)
        worker.observe_request("/api/v1/export", "POST", 429, 0.0001)
        worker.inc("appliance_cache_misses_total", kind="export")
        worker.inc("appliance_cache_hits_total", 0.5, kind="timeseries", name="x", value="y")
        worker.set_gauge("appliance_up", 1)
        worker.flush()
    text = render_prometheus(directory)
    samples = parse_exposition(text)
    assert render_prometheus(directory) == text
    assert render_prometheus(directory, live=first) == text
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == sorted(types)
    assert (
        value_of(samples, "appliance_cache_hits_total", kind="timeseries", name="x", value="y") == 1
    )
    assert f"# HELP {REQUESTS_TOTAL} " in text
    assert f"# HELP {REQUEST_DURATION} " in text


def test_nothing_recorded_renders_nothing(directory: Path) -> None:
    directory.mkdir()
    assert render_prometheus(directory) == ""
    assert render_prometheus(directory / "missing") == ""


def test_the_folder_and_snapshots_are_private(directory: Path) -> None:
    worker = WorkerMetrics(directory, "101")
    worker.flush()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "worker-101.json").stat().st_mode) == 0o600
    assert [path.name for path in directory.iterdir()] == ["worker-101.json"]


@pytest.mark.parametrize("worker_id", ["", "../101", ".hidden", "a/b", "a b"])
def test_a_worker_id_unfit_for_a_file_name_is_refused(directory: Path, worker_id: str) -> None:
    with pytest.raises(ValueError, match="worker id"):
        WorkerMetrics(directory, worker_id)


def test_metrics_that_prometheus_would_reject_are_refused(directory: Path) -> None:
    worker = WorkerMetrics(directory, "101")
    with pytest.raises(ValueError, match="metric name"):
        worker.inc("appliance-cache-hits")
    with pytest.raises(ValueError, match="label name"):
        worker.inc("appliance_cache_hits_total", le="1")
    with pytest.raises(ValueError, match="label name"):
        worker.inc("appliance_cache_hits_total", __reserved="1")
    with pytest.raises(ValueError, match="only goes up"):
        worker.inc("appliance_cache_hits_total", -1)
    with pytest.raises(ValueError, match="only goes up"):
        worker.inc("appliance_cache_hits_total", float("nan"))
    with pytest.raises(ValueError, match="worker"):
        worker.set_gauge("appliance_up", 1, worker="me")
    with pytest.raises(TypeError, match="strings"):
        worker.inc("appliance_cache_hits_total", kind=3)  # type: ignore[arg-type]
    worker.inc("appliance_cache_hits_total")
    with pytest.raises(ValueError, match="is a counter"):
        worker.set_gauge("appliance_cache_hits_total", 1)
    answer(worker, 1)
    with pytest.raises(ValueError, match="is a histogram"):
        worker.inc(REQUEST_DURATION)


def test_an_info_gauge_names_only_the_version_served_now(directory: Path) -> None:
    worker = WorkerMetrics(directory, str(os.getpid()))
    worker.set_info("appliance_data_version_info", version="v0001")
    worker.set_info("appliance_data_version_info", version="v0002")
    assert version_gauges(rendered(directory, live=worker)) == {
        (
            "appliance_data_version_info",
            frozenset({("version", "v0002"), ("worker", str(os.getpid()))}),
        ): 1,
    }


def node_snapshot() -> Snapshot:
    """Series of the node as a whole: an info gauge, a counter, a gauge."""
    return Snapshot(
        worker="",
        counters={("appliance_imports_total", (("reason", "none"), ("result", "imported"))): 3},
        gauges={
            ("appliance_build_info", (("revision", "abc"), ("version", "0.1.0"))): 1,
            ("appliance_ready", ()): 0,
        },
    )


def test_the_node_series_are_shown_once_without_a_worker_label(
    directory: Path, live_pid: str
) -> None:
    other, me = WorkerMetrics(directory, live_pid), WorkerMetrics(directory, str(os.getpid()))
    for worker in (other, me):
        worker.set_info("appliance_data_version_info", version="v0001")
        worker.flush()
    help_texts = {"appliance_ready": "1 if ready."}
    text = render_prometheus(directory, me, help_texts, node_snapshot())
    samples = parse_exposition(text)
    assert value_of(samples, "appliance_imports_total", reason="none", result="imported") == 3
    assert value_of(samples, "appliance_build_info", revision="abc", version="0.1.0") == 1
    assert value_of(samples, "appliance_ready") == 0
    assert "# TYPE appliance_imports_total counter" in text
    assert "# HELP appliance_ready 1 if ready.\n# TYPE appliance_ready gauge\n" in text
    assert len(version_gauges(samples)) == 2  # the workers' gauges keep their worker label


def test_a_node_series_under_a_name_the_workers_use_is_left_out(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = WorkerMetrics(directory, str(os.getpid()))
    answer(worker, 2)
    node = Snapshot(worker="", counters={(REQUESTS_TOTAL, ()): 1000})
    with caplog.at_level(logging.WARNING, logger="server.metrics"):
        samples = parse_exposition(render_prometheus(directory, worker, node=node))
    assert requests_of(samples) == 2
    assert (REQUESTS_TOTAL, frozenset()) not in samples
    assert "a worker metric has that name" in caplog.text


def test_prometheus_client_parses_the_exposition(directory: Path, live_pid: str) -> None:
    other, me = WorkerMetrics(directory, live_pid), WorkerMetrics(directory, str(os.getpid()))
    for worker in (other, me):
        answer(worker, 2)
        worker.observe_request("/api/v1/items", "GET", 503, 0.2)
        worker.set_info("appliance_data_version_info", version='v"1\\\n')
        worker.flush()
    text = render_prometheus(directory, me, node=node_snapshot())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # The parser names a counter without its _total; its samples keep it.
    assert families["appliance_http_requests"].type == "counter"
    assert families["appliance_http_request_duration_seconds"].type == "histogram"
    assert families["appliance_imports"].type == "counter"
    versions = {s.labels["version"] for s in families["appliance_data_version_info"].samples}
    assert versions == {'v"1\\\n'}
    count = next(
        s
        for s in families["appliance_http_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["route"] == "/api/v1/items"
    )
    assert count.value == 2
