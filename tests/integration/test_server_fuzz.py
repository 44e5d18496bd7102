"""Schemathesis against the real server's OpenAPI document (issue 3, item 8): no 5xx, ever.

One bounded run (MAX_EXAMPLES per operation, fixed seed) of the `st` CLI, as CI would run it,
with the admin token so the admin operations get past their guard. Its NDJSON event stream tells
which operations were exercised, what every response was, and which checks failed. Nothing is
excluded: the admin operations run too (uploads without a pack are refused, rollbacks only go to
versions the store has).
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, Signer, run
from tests.integration.live_server import ADMIN_TOKEN, LiveServer, live_server

MAX_EXAMPLES = 25
SEED = 20261101
CHECKS = ("not_a_server_error", "response_schema_conformance")
RUN_TIMEOUT = 150
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def store_with(data_dir: Path, signer: Signer, *packs: Path) -> Path:
    """A data store with `packs` imported by the CLI."""
    for pack in packs:
        run("appliance", "import", "--data-dir", data_dir, "--signers", signer.allowed_signers,
            pack, check=True)  # fmt: skip
    return data_dir


@dataclass
class FuzzRun:
    """What one schemathesis run did, read from its NDJSON events."""

    output: str
    operations: set[str]  # "GET /api/v1/items", from the served document
    cases: Counter[str] = field(default_factory=Counter)  # per operation, fuzzing phase only
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx answers and transport failures
    # (check, operation, status of the answer that failed it)
    failed_checks: Counter[tuple[str, str, int | None]] = field(default_factory=Counter)
    engine_errors: list[str] = field(default_factory=list)

    def read(self, events: Path) -> None:
        """Tally the scenarios of an NDJSON report."""
        for line in events.read_text().splitlines():
            ((kind, event),) = json.loads(line).items()
            if kind in ("NonFatalError", "FatalError"):
                self.engine_errors.append(json.dumps(event)[:500])
            elif kind == "ScenarioFinished":
                self.scenario(event)

    def scenario(self, event: dict[str, Any]) -> None:
        """Tally one finished scenario: its cases, its answers and the checks they failed."""
        recorder = event["recorder"]
        interactions = recorder.get("interactions", {})
        for case_id, case in recorder.get("cases", {}).items():
            operation = f"{case['value']['method']} {case['value']['path']}"
            if event["phase"] == "fuzzing":
                self.cases[operation] += 1
            response = (interactions.get(case_id) or {}).get("response") or {}
            for check in recorder.get("checks", {}).get(case_id, []):
                if check["status"] == "failure":
                    self.failed_checks[check["name"], operation, response.get("status_code")] += 1
        for interaction in interactions.values():
            request, response = interaction["request"], interaction.get("response")
            where = f"{request['method']} {request['uri']}"
            if response is None:
                self.server_errors.append(f"{where}: no response")
                continue
            self.statuses[response["status_code"]] += 1
            if response["status_code"] >= 500:
                self.server_errors.append(f"{where}: {response['status_code']}")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, signer: Signer, good_pack: Path, newer_pack: Path
) -> Iterator[LiveServer]:
    """The real server, two workers, on a store with two versions (so rollbacks can succeed)."""
    data_dir = store_with(tmp_path_factory.mktemp("fuzz") / "data", signer, good_pack, newer_pack)
    with live_server(data_dir, signer.allowed_signers, workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory, server: LiveServer) -> FuzzRun:
    """One bounded schemathesis run against the server."""
    folder = tmp_path_factory.mktemp("schemathesis")
    events = folder / "events.ndjson"
    argv = [
        str(BIN / "st"), "run", server.url("/schema/openapi.json"),
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--checks", ",".join(CHECKS),
        # Keep testing an operation after a failure, so one failure cannot hide a 5xx behind it.
        "--continue-on-failure",
        "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--report", "ndjson", "--report-ndjson-path", str(events),
        "--no-color",
    ]  # fmt: skip
    # In its own folder: schemathesis would read a schemathesis.toml from the working directory.
    done = subprocess.run(argv, capture_output=True, text=True, cwd=folder, timeout=RUN_TIMEOUT)
    assert events.exists(), done.stdout + done.stderr
    schema = server.get("/schema/openapi.json").json()
    operations = {
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method in methods
        if method in HTTP_METHODS
    }
    result = FuzzRun(done.stdout + done.stderr, operations)
    result.read(events)
    return result


def test_every_operation_was_fuzzed(fuzz_run: FuzzRun) -> None:
    assert not fuzz_run.engine_errors, fuzz_run.engine_errors
    missing = {op for op in fuzz_run.operations if fuzz_run.cases[op] == 0}
    assert not missing, f"no fuzzing cases for {sorted(missing)}\n{fuzz_run.output[-3000:]}"
    assert sum(fuzz_run.statuses.values()) >= MAX_EXAMPLES, fuzz_run.statuses


def test_fuzzing_gets_no_server_error(fuzz_run: FuzzRun, server: LiveServer) -> None:
    assert not fuzz_run.server_errors, fuzz_run.server_errors[:20]
    assert not [key for key in fuzz_run.failed_checks if key[0] == "not_a_server_error"]
    assert server.process.poll() is None, "the server died"


def test_every_answer_matches_the_documented_schema(fuzz_run: FuzzRun) -> None:
    failures = sorted(
        f"{operation} -> {status}: {check} failed {n} times"
        for (check, operation, status), n in fuzz_run.failed_checks.items()
        if check != "not_a_server_error"
    )
    report = fuzz_run.output.partition(" FAILURES ")[2][:2500]
    assert not failures, (
        "\n".join(failures) + "\n\nFirst failure as schemathesis shows it:" + report
    )


def test_random_bytes_uploaded_as_a_pack_are_refused_with_a_4xx(server: LiveServer) -> None:
    # The document has no request body for the upload (the pack is the raw body), so
    # schemathesis only ever sends it empty: random bodies are sent here instead.
    rng = random.Random(SEED)
    bodies = [rng.randbytes(size) for size in (1, 511, 512, 10_240, 100_000)]
    bodies.append(b"ustar\x00" * 200)  # looks like the start of a tar
    for body in bodies:
        answer = server.post("/api/v1/data/packs", content=body, headers=server.admin())
        assert 400 <= answer.status_code < 500, (len(body), answer.status_code, answer.text)
        assert answer.json()["error"]["status"] == answer.status_code
