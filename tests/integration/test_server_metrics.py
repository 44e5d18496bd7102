"""The metrics to alert on, read from the real server's /metrics with prometheus_client's parser:
build, freshness of the served data, import outcomes counted by the importer, store integrity,
readiness; a damaged counts file is a node fault reported as a metric, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from appliance import __version__
from tests.conftest import GENERATED_AT, Signer, import_into, make_pack
from tests.integration.live_server import LiveServer, live_server
from tests.integration.test_server_api import (
    FLUSH_WAIT,
    error_of,
    from_every_worker,
    store_with_good_pack,
    upload,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"


def scrape(server: LiveServer) -> dict[str, list[Sample]]:
    """The samples of one /metrics answer by metric family, parsed by prometheus_client."""
    answer = server.get("/metrics")
    assert answer.status_code == 200, answer.text
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(answer.text):
        assert family.name not in families, f"{family.name} twice"
        families[family.name] = family.samples
    return families


def values(
    families: dict[str, list[Sample]], sample_name: str
) -> dict[frozenset[tuple[str, str]], float]:
    """labels -> value of every sample named `sample_name` (a counter's keeps its _total)."""
    return {
        frozenset(sample.labels.items()): sample.value
        for samples in families.values()
        for sample in samples
        if sample.name == sample_name
    }


def one_value(families: dict[str, list[Sample]], sample_name: str, **labels: str) -> float:
    """The value of the sample `sample_name` with exactly these labels."""
    return values(families, sample_name)[frozenset(labels.items())]


def imports(families: dict[str, list[Sample]]) -> dict[tuple[str, str], float]:
    """(result, reason) -> appliance_imports_total."""
    found = values(families, "appliance_imports_total")
    return {
        (dict(labels)["result"], dict(labels)["reason"]): value for labels, value in found.items()
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server of good_pack, whose importer also refused good_pack once (a replay)."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    assert import_into(data_dir, good_pack, signer, check=False).returncode == 3
    with live_server(data_dir, signer.allowed_signers, env={"APPLIANCE_REVISION": REVISION}) as up:
        yield up


def test_metrics_are_valid_exposition_with_the_families_to_alert_on(server: LiveServer) -> None:
    # The request families appear once a request is counted: this test may run first, and the
    # worker answering it may have answered nothing yet (the other's counts reach the answer
    # with its next snapshot).
    from_every_worker(server, "/api/v1/data/current", at_least=2)
    time.sleep(FLUSH_WAIT)
    answer = server.get("/metrics")
    kinds = {f.name: f.type for f in text_string_to_metric_families(answer.text)}
    # prometheus_client names a counter's family without its _total.
    assert {
        "appliance_build_info": "gauge",
        "appliance_data_generated_timestamp_seconds": "gauge",
        "appliance_data_version_info": "gauge",
        "appliance_http_requests": "counter",
        "appliance_http_request_duration_seconds": "histogram",
        "appliance_imports": "counter",
        "appliance_import_last_timestamp_seconds": "gauge",
        "appliance_import_counts_readable": "gauge",
        "appliance_store_integrity_ok": "gauge",
        "appliance_ready": "gauge",
    }.items() <= kinds.items()
    for line in answer.text.splitlines():
        if line.startswith("# TYPE appliance_") and "_info " not in line:
            name = line.split()[2]
            assert f"# HELP {name} " in answer.text, f"{name} has no HELP"


def test_build_info_names_the_version_and_the_image_revision(server: LiveServer) -> None:
    assert values(scrape(server), "appliance_build_info") == {
        frozenset({("version", __version__), ("revision", REVISION)}): 1.0
    }


def test_the_served_data_is_dated_by_its_generated_at(server: LiveServer) -> None:
    families = scrape(server)
    generated = one_value(families, "appliance_data_generated_timestamp_seconds")
    assert generated == GENERATED_AT.timestamp()
    assert one_value(families, "appliance_ready") == 1.0
    assert one_value(families, "appliance_store_integrity_ok", check="current_version") == 1.0
    assert one_value(families, "appliance_store_integrity_ok", check="audit_trail") == 1.0


def test_imports_by_the_cli_are_counted_by_result_and_reason(server: LiveServer) -> None:
    families = scrape(server)
    counted = imports(families)
    assert counted[("imported", "none")] >= 1
    assert counted[("rejected", "replay")] >= 1
    last = one_value(
        families, "appliance_import_last_timestamp_seconds", result="rejected", reason="replay"
    )
    assert time.time() - 600 < last <= time.time()
    assert one_value(families, "appliance_import_counts_readable") == 1.0


def test_a_refused_upload_is_counted_at_the_next_scrape(
    server: LiveServer, tmp_path: Path, demo_tables: Path, untrusted_signer: Signer
) -> None:
    pack = make_pack(demo_tables, untrusted_signer, tmp_path / "untrusted.pack")
    before = imports(scrape(server))
    reason = error_of(upload(server, pack.read_bytes()), 422).reason
    assert reason is not None
    after = imports(scrape(server))
    assert after.get(("rejected", reason), 0) == before.get(("rejected", reason), 0) + 1
    assert {k: v for k, v in after.items() if k != ("rejected", reason)} == {
        k: v for k, v in before.items() if k != ("rejected", reason)
    }


@pytest.fixture
def damaged_counts(server: LiveServer) -> Iterator[Path]:
    """The server's import counts file torn in the middle; put back after the test."""
    path = server.data_dir / "imports.json"
    kept = path.read_bytes()
    path.write_bytes(kept[: len(kept) // 2])
    yield path
    path.write_bytes(kept)


def test_a_damaged_counts_file_is_a_node_fault_not_an_error(
    server: LiveServer, damaged_counts: Path
) -> None:
    logged = len(server.log_lines)
    answers = from_every_worker(server, "/metrics")
    for answer in answers:
        assert answer.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        assert "appliance_imports" not in families
        assert [s.value for s in families["appliance_import_counts_readable"].samples] == [0.0]
    warnings = [line for line in server.log_lines[logged:] if "import counts" in line]
    assert warnings
    assert all('"level":"warning"' in line and "node fault" in line for line in warnings)
    assert len(warnings) <= server.workers  # once per worker, not at every scrape
    assert not [line for line in server.log_lines[logged:] if "Traceback" in line]


def test_a_damaged_audit_trail_shows_in_the_store_integrity(server: LiveServer) -> None:
    trail = server.data_dir / "history.jsonl"
    kept = trail.read_bytes()
    edited = kept.replace(b'"event": "import"', b'"event": "imp0rt"', 1)
    assert edited != kept
    trail.write_bytes(edited)
    try:
        families = scrape(server)
        assert one_value(families, "appliance_store_integrity_ok", check="audit_trail") == 0.0
        assert one_value(families, "appliance_ready") == 1.0  # reported, never acted on
    finally:
        trail.write_bytes(kept)
    time.sleep(0.01)  # a new mtime, so the trail is checked again
    trail.touch()
    assert one_value(scrape(server), "appliance_store_integrity_ok", check="audit_trail") == 1.0


def test_every_worker_reports_only_the_version_it_serves_after_a_switch(
    server: LiveServer, newer_pack: Path
) -> None:
    from_every_worker(server, "/metrics")  # every worker has reported v0001 itself
    published = upload(server, newer_pack.read_bytes())
    assert published.status_code == 201, published.text
    vid = published.json()["version"]
    try:
        time.sleep(FLUSH_WAIT)
        reported = values(scrape(server), "appliance_data_version_info")
        workers = {dict(labels)["worker"] for labels in reported}
        assert len(workers) == server.workers
        assert {dict(labels)["version"] for labels in reported} == {vid}
    finally:
        back = server.post(
            "/api/v1/data/rollback", headers=server.admin(), json={"version": "v0001"}
        )
        assert back.status_code == 200, back.text


def test_every_worker_reports_its_own_readiness_whichever_answers(server: LiveServer) -> None:
    time.sleep(FLUSH_WAIT)  # every worker has recorded its readiness by itself, unasked
    reported = values(scrape(server), "appliance_worker_ready")
    workers = {dict(labels)["worker"] for labels in reported}
    assert len(workers) == server.workers > 1
    assert set(reported.values()) == {1.0}


def test_a_node_with_no_data_is_not_ready_and_has_no_data_age(
    tmp_path: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    assert import_into(data_dir, tmp_path / "missing.pack", signer, check=False).returncode == 3
    with live_server(data_dir, signer.allowed_signers, workers=1) as empty:
        families = scrape(empty)
    assert one_value(families, "appliance_ready") == 0.0
    assert set(values(families, "appliance_worker_ready").values()) == {0.0}
    assert "appliance_data_generated_timestamp_seconds" not in families
    assert values(families, "appliance_build_info") == {
        frozenset({("version", __version__), ("revision", "unknown")}): 1.0
    }
    assert imports(families) == {("rejected", "not-a-pack"): 1.0}
