"""The server never answers 200 from a damaged version, and says what to do (issue: hardening).

Bit rot is simulated by flipping one bit of a published file, as a failing disk or a slipped hand
would; the real server (Granian, two workers) serves the store.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Signer, import_into, make_pack, make_tables, run
from tests.integration.live_server import live_server
from tests.packs import flip_byte

ITEM = "/api/v1/items/IT-0000001/timeseries"


@pytest.fixture
def two_versions(tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer) -> Path:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    import_into(data_dir, newer_pack, signer)
    return data_dir


def first_answer_offset(data_dir: Path, vid: str) -> int:
    """An offset inside the first stored answer of `vid` (the timeseries of the first item)."""
    con = duckdb.connect(str(data_dir / "versions" / vid / "data.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT offset_bytes, length_bytes FROM answer_index "
            "WHERE kind = 'timeseries' AND item_id = 'IT-0000001'"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]) + int(row[1]) // 2


@pytest.mark.parametrize("name", ["answers.bin", "data.duckdb"])
def test_a_version_damaged_before_start_is_never_served(
    two_versions: Path, signer: Signer, name: str
) -> None:
    target = two_versions / "versions" / "v0002" / name
    flip_byte(target, target.stat().st_size // 2)
    with live_server(two_versions, signer.allowed_signers) as server:
        ready = server.get("/health/ready")
        assert ready.status_code == 503
        check = {c["name"]: c for c in ready.json()["checks"]}["data_version"]
        assert check["ok"] is False
        assert (
            f"data version v0002 is damaged ({name} does not match its SHA-256)" in check["detail"]
        )
        assert "roll back to a good version" in check["detail"]
        for encoding in ("gzip", "identity"):
            answer = server.get(ITEM, headers={"accept-encoding": encoding})
            assert answer.status_code == 503, encoding
            error = answer.json()["error"]
            assert (error["reason"], error["code"]) == ("damaged", "unavailable")
            assert "no data version has been imported" not in error["message"]

        rolled = server.post(
            "/api/v1/data/rollback", json={"version": "v0001"}, headers=server.admin()
        )
        assert rolled.status_code == 200, rolled.text
        # Every worker notices the new `current` within CHECK_SECONDS; give them a second.
        time.sleep(1.0)
        for _ in range(10):
            assert server.get(ITEM).status_code == 200
            assert server.get("/health/ready").status_code == 200


def test_a_byte_flipped_while_served_is_never_sent(two_versions: Path, signer: Signer) -> None:
    with live_server(two_versions, signer.allowed_signers) as server:
        assert server.get(ITEM, headers={"accept-encoding": "gzip"}).status_code == 200
        answers = two_versions / "versions" / "v0002" / "answers.bin"
        flip_byte(answers, first_answer_offset(two_versions, "v0002"))
        for encoding in ("gzip", "identity"):
            answer = server.get(ITEM, headers={"accept-encoding": encoding})
            assert answer.status_code == 503, (encoding, answer.status_code)
            assert answer.json()["error"]["reason"] == "damaged"
        # The worker that met the damage tells the others (run/<run name>/damaged-<vid>) within a check
        # period: from then on nothing of that version is served with 200 by any worker.
        time.sleep(1.0)
        statuses = {server.get("/api/v1/items/IT-0000002/timeseries").status_code for _ in range(6)}
        assert statuses == {503}, statuses
        assert server.get("/health/ready").status_code == 503


def test_readiness_and_versions_report_a_damaged_trail_but_nothing_stops(
    two_versions: Path, signer: Signer
) -> None:
    history = two_versions / "history.jsonl"
    flip_byte(history, 10)
    with live_server(two_versions, signer.allowed_signers) as server:
        ready = server.get("/health/ready")
        assert ready.status_code == 200
        trail = {c["name"]: c for c in ready.json()["checks"]}["audit_trail"]
        assert (trail["ok"], trail["required"]) == (False, False)
        assert trail["detail"].startswith("audit trail damaged at line")
        versions = server.get("/api/v1/data/versions").json()
        assert versions["audit_trail"]["ok"] is False
        assert versions["audit_trail"]["first_bad_line"] in (1, 2)
        assert [v["version"] for v in versions["versions"]] == ["v0001", "v0002"]
        assert server.get(ITEM).status_code == 200
    assert json.loads(history.read_bytes().splitlines()[1])["event"] == "import"


def test_an_upload_dated_in_the_future_is_refused_with_the_nodes_setting(
    tmp_path: Path, signer: Signer
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    pack = make_pack(
        make_tables(tmp_path / "tables", generated_at=soon), signer, tmp_path / "a.pack"
    )
    (tmp_path / "data").mkdir()
    env = {"APPLIANCE_MAX_FUTURE_HOURS": "1"}
    with live_server(tmp_path / "data", signer.allowed_signers, env=env) as server:
        refused = server.post(
            "/api/v1/data/packs", content=pack.read_bytes(), headers=server.admin()
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["reason"] == "future"
        assert "more than 1 h after this node's clock" in refused.json()["error"]["message"]


def test_a_current_version_that_will_not_open_makes_the_worker_unready(
    two_versions: Path, signer: Signer
) -> None:
    assert run("appliance", "rollback", "v0001", "--data-dir", two_versions).returncode == 0
    folder = two_versions / "versions" / "v0002"
    report = json.loads((folder / "import.json").read_text())
    report["version"] = "v0009"  # sealed again, so only opening it finds the problem
    data = (json.dumps(report, indent=2) + "\n").encode()
    for name in ("import.json", "SHA256SUMS"):
        (folder / name).chmod(0o644)
    (folder / "import.json").write_bytes(data)
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    digest = hashlib.sha256(data).hexdigest()
    fixed = [f"{digest}  import.json" if line.endswith("  import.json") else line for line in sums]
    (folder / "SHA256SUMS").write_text("\n".join(fixed) + "\n")
    with live_server(two_versions, signer.allowed_signers) as server:
        assert server.get(ITEM).status_code == 200
        # Every worker serves v0001 before `current` moves (a worker still checking v0001 when
        # it moves drops it for the new current, which then fails: nothing to serve is right).
        serving: set[int] = set()
        deadline = time.monotonic() + 30
        while len(serving) < server.workers and time.monotonic() < deadline:
            answer = server.get("/health/ready")
            if answer.status_code == 200:
                serving.add(answer.json()["worker"])
        assert len(serving) == server.workers
        # `appliance rollback v0002` refuses such a version; swap `current` as a crash might.
        link = two_versions / ".current.test.tmp"
        link.symlink_to("versions/v0002")
        link.replace(two_versions / "current")
        time.sleep(1.0)
        ready = server.get("/health/ready")
        assert ready.status_code == 503
        check = {c["name"]: c for c in ready.json()["checks"]}["data_version"]
        assert check["detail"].startswith("serving v0001, but cannot open version v0002")
        assert server.get(ITEM).headers["x-data-version"] == "v0001"  # undamaged, still served
