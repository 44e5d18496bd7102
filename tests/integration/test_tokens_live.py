"""Named tokens on the real server: made and revoked with the CLI while it runs, honoured within
a second, refused with a reason code, and named in the audit trail with who, from where and
which request."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.access.tokens import TokenStore
from tests.conftest import BIN, Signer, run
from tests.integration.live_server import ADMIN_TOKEN, LiveServer, live_server
from tests.integration.test_server_api import bearer, error_of, store_with_good_pack

HONOURED_WITHIN = 1.0  # seconds: the promise for a new or revoked token
ITEM = "/api/v1/items/IT-0000001/timeseries"


@pytest.fixture(scope="module")
def token_server(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, signer: Signer
) -> Iterator[LiveServer]:
    """A server with the bootstrap admin token of the tests, and no viewer token yet."""
    data_dir = store_with_good_pack(tmp_path_factory, good_pack, signer)
    with live_server(data_dir, signer.allowed_signers) as started:
        yield started


def token(server: LiveServer, *argv: str) -> str:
    """`appliance token ...` on the server's data dir; its stdout."""
    done = run("appliance", "token", *argv, "--data-dir", server.data_dir)
    assert done.returncode == 0, done.stderr
    return done.stdout


def history(server: LiveServer) -> list[dict[str, object]]:
    lines = (server.data_dir / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_new_admin_token_works_within_a_second_and_the_trail_names_it(
    token_server: LiveServer,
) -> None:
    secret = token(token_server, "create", "ops-alice", "--role", "admin").strip()
    time.sleep(HONOURED_WITHIN)
    answers = [token_server.post("/api/v1/data/refresh", headers=bearer(secret)) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6  # every worker, on fresh connections
    last = answers[-1]
    event = [e for e in history(token_server) if e["event"] == "refresh"][-1]
    assert event["actor"] == "token ops-alice (admin) from 127.0.0.1"
    assert event["by"] == {
        "via": "api",
        "host": event["by"]["host"],  # type: ignore[index]
        "token": "ops-alice",
        "role": "admin",
        "client": "127.0.0.1",
        "request_id": last.headers["x-request-id"],
    }
    assert secret not in (token_server.data_dir / "history.jsonl").read_text()
    listed = json.loads(token(token_server, "list", "--json"))["tokens"]
    mine = next(t for t in listed if t["name"] == "ops-alice")
    assert mine["state"] == "active"
    assert mine["last_used"] is not None
    assert "sha256" not in mine


def test_a_revoked_token_is_refused_within_a_second_with_its_reason(
    token_server: LiveServer,
) -> None:
    secret = token(token_server, "create", "ops-bob", "--role", "admin").strip()
    time.sleep(HONOURED_WITHIN)
    assert token_server.post("/api/v1/data/refresh", headers=bearer(secret)).status_code == 200
    token(token_server, "revoke", "ops-bob")
    time.sleep(HONOURED_WITHIN)
    for _ in range(4):
        refused = error_of(token_server.post("/api/v1/data/refresh", headers=bearer(secret)), 401)
        assert refused.reason == "token_revoked"
        assert refused.message.startswith("token 'ops-bob' was revoked at ")
    events = [e["event"] for e in history(token_server)]
    assert "token-create" in events
    assert "token-revoke" in events


def test_an_upload_names_the_token_in_the_trail_and_in_the_version(
    token_server: LiveServer, newer_pack: Path
) -> None:
    secret = token(token_server, "create", "ops-erin", "--role", "admin").strip()
    time.sleep(HONOURED_WITHIN)
    answer = token_server.post(
        "/api/v1/data/packs", content=newer_pack.read_bytes(), headers=bearer(secret)
    )
    assert answer.status_code == 201, answer.text
    vid = answer.json()["version"]
    event = next(e for e in history(token_server) if e["event"] == "import" and e["version"] == vid)
    assert event["actor"] == "token ops-erin (admin) from 127.0.0.1"
    assert event["by"]["request_id"] == answer.headers["x-request-id"]  # type: ignore[index]
    versions = token_server.get("/api/v1/data/versions").json()["versions"]
    uploaded = next(v for v in versions if v["version"] == vid)
    assert uploaded["imported_by"] == event["actor"]
    # How it came: through the API with that token, not on the node's command line.
    assert uploaded["imported_via"] == event["by"]
    assert uploaded["imported_via"]["via"] == "api"
    current = token_server.get("/api/v1/data/current").json()
    for _ in range(40):  # the other workers switch to the new version within a second
        if current["version"] == vid:
            break
        time.sleep(0.05)
        current = token_server.get("/api/v1/data/current").json()
    assert (current["version"], current["imported_via"]) == (vid, event["by"])
    first = next(v for v in versions if v["version"] == "v0001")  # `appliance import`
    assert first["imported_via"]["via"] == "cli"
    assert (
        first["imported_by"] == f"{first['imported_via']['user']}@{first['imported_via']['host']}"
    )


def test_an_expired_token_is_refused_with_its_reason(token_server: LiveServer) -> None:
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    secret, _ = TokenStore(token_server.data_dir).create(
        "ops-old", "admin", timedelta(days=1), "tests@here", long_ago
    )
    time.sleep(HONOURED_WITHIN)
    refused = error_of(token_server.post("/api/v1/data/refresh", headers=bearer(secret)), 401)
    assert refused.reason == "token_expired"
    assert "expired at" in refused.message


def test_a_viewer_token_closes_the_reads_and_cannot_act(token_server: LiveServer) -> None:
    assert token_server.get(ITEM).status_code == 200
    secret = token(token_server, "create", "wallboard", "--role", "viewer").strip()
    try:
        time.sleep(HONOURED_WITHIN)
        for _ in range(4):  # the fast path and the framework, on every worker
            closed = error_of(token_server.get(ITEM), 401)
            assert closed.reason == "token_required"
            assert token_server.get(ITEM, headers=bearer(secret)).status_code == 200
            assert token_server.get(ITEM, headers=bearer(ADMIN_TOKEN)).status_code == 200
            wrong = error_of(token_server.get(ITEM, headers=bearer("apl_" + "x" * 43)), 401)
            assert wrong.reason == "token_invalid"
        denied = error_of(token_server.post("/api/v1/data/refresh", headers=bearer(secret)), 403)
        assert "'wallboard' is a viewer token" in denied.message
    finally:
        refused = run(
            "appliance", "token", "revoke", "wallboard", "--data-dir", token_server.data_dir
        )
        assert (
            refused.returncode == 2 and "last viewer token" in refused.stderr
        )  # reads stay closed
        token(token_server, "revoke", "wallboard", "--open-reads")
    time.sleep(HONOURED_WITHIN)
    assert token_server.get(ITEM).status_code == 200  # the last viewer token revoked: open again


SECRET = "apl_" + "SecretThatMustNotBeLogged0123456789abcdefgh"[:43]


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/items?token={secret}",
        "/api/v1/items?access_token=abc",
        "/api/v1/items?ACCESS_TOKEN=abc",
        "/api/v1/items?access%5Ftoken=abc",
        "/api/v1/items?api_key=x",
        "/api/v1/items?q={secret}",
        "/api/v1/items?q=apl%5F{rest}",
        "/api/v1/items/{secret}/timeseries",
    ],
)
def test_a_token_in_the_url_is_refused_and_never_logged(
    token_server: LiveServer, target: str
) -> None:
    assert len(SECRET) == 47
    url = target.format(secret=SECRET, rest=SECRET.removeprefix("apl_"))
    refused = error_of(token_server.get(url), 400)
    assert "Authorization header" in refused.message
    time.sleep(0.2)
    assert not [line for line in token_server.log_lines if SECRET in line]
    assert not [line for line in token_server.log_lines if SECRET.removeprefix("apl_") in line]


@pytest.mark.parametrize("query", ["q=MAPL_01", "category=Chapl_x", "q=apl_short"])
def test_what_only_looks_like_a_token_prefix_is_not_refused(
    token_server: LiveServer, query: str
) -> None:
    assert token_server.get(f"/api/v1/items?{query}").status_code == 200


def test_the_versions_api_shows_who_made_each_change(token_server: LiveServer) -> None:
    secret = token(token_server, "create", "ops-carol", "--role", "admin").strip()
    time.sleep(HONOURED_WITHIN)
    assert token_server.post("/api/v1/data/refresh", headers=bearer(secret)).status_code == 200
    listed = token_server.get("/api/v1/data/versions").json()["history"]
    actors = [event.get("actor") for event in listed]
    assert "token ops-carol (admin) from 127.0.0.1" in actors
    imported = next(event for event in listed if event["event"] == "import")
    assert imported["by"]["via"] == "cli"


def test_a_cli_change_records_the_invoking_user(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    for pack in (good_pack, newer_pack):
        run("appliance", "import", pack, "--data-dir", data_dir, "--signers",
            signer.allowed_signers, check=True)  # fmt: skip
    subprocess.run(
        [str(BIN / "appliance"), "rollback", "v0001", "--data-dir", str(data_dir)],
        env=os.environ | {"SUDO_USER": "dave"},
        check=True,
        capture_output=True,
    )
    events = [json.loads(line) for line in (data_dir / "history.jsonl").read_text().splitlines()]
    rollback = events[-1]
    assert rollback["event"] == "rollback"
    assert rollback["actor"].startswith("dave@")
    assert rollback["by"]["user"] == "dave"
    assert rollback["by"]["via"] == "cli"
    trail = run("appliance", "history", "verify", "--data-dir", data_dir)
    assert trail.returncode == 0, trail.stdout + trail.stderr


def test_a_book_the_node_cannot_use_is_a_fault_of_the_node_not_a_bad_token(
    token_server: LiveServer,
) -> None:
    secret = token(token_server, "create", "ops-frank", "--role", "admin").strip()
    book = token_server.data_dir / "tokens.json"
    kept = book.read_bytes()
    try:
        book.write_bytes(b"{")
        time.sleep(HONOURED_WITHIN)
        fault = error_of(token_server.post("/api/v1/data/refresh", headers=bearer(secret)), 503)
        assert fault.reason == "token-book-unusable"
        # The bootstrap token of the settings still works, and reads are closed meanwhile.
        assert (
            token_server.post("/api/v1/data/refresh", headers=bearer(ADMIN_TOKEN)).status_code
            == 200
        )
        assert error_of(token_server.get(ITEM), 401).reason == "token_required"
        assert any("token book not usable" in line for line in token_server.log_lines)
    finally:
        book.write_bytes(kept)
    time.sleep(HONOURED_WITHIN)
    assert token_server.post("/api/v1/data/refresh", headers=bearer(secret)).status_code == 200
