"""The token book: what it stores, how a secret is looked up, and every way a book can be bad."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.access.actors import INVOKED_BY_ENV, local_actor
from appliance.access.tokens import (
    BOOTSTRAP_ADMIN,
    BOOTSTRAP_VIEWER,
    TOKEN_PREFIX,
    Caller,
    Refused,
    TokenBook,
    TokenStore,
    bootstrap_digests,
    parse_lifetime,
    token_digest,
)
from appliance.errors import ConfigError
from server.tokens import TokenGate

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_the_book_keeps_the_hash_never_the_secret(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    secret, record = store.create("ops", "admin", None, "alice@node", NOW)
    assert secret.startswith(TOKEN_PREFIX)
    assert len(secret) > 40
    text = store.path.read_text()
    assert secret not in text
    assert token_digest(secret) in text
    assert record.sha256 == token_digest(secret)
    assert store.path.stat().st_mode & 0o777 == 0o640
    assert json.loads(text)["format"] == "appliance-tokens/1"


def test_a_secret_names_its_token_until_it_expires_or_is_revoked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    admin, _ = store.create("ops", "admin", None, "alice@node", NOW)
    viewer, _ = store.create("wall", "viewer", timedelta(days=1), "alice@node", NOW)
    book = store.book(())
    assert book.identify(admin, NOW) == Caller("ops", "admin")
    assert book.identify(viewer, NOW) == Caller("wall", "viewer")
    expired = book.identify(viewer, NOW + timedelta(days=1))
    assert isinstance(expired, Refused)
    assert expired.reason == "token_expired"
    assert "'wall' expired at 2026-12-03T12:00:00Z" in expired.message
    store.revoke("ops", "bob@node", NOW + timedelta(hours=1))
    revoked = store.book(()).identify(admin, NOW + timedelta(hours=2))
    assert isinstance(revoked, Refused)
    assert (revoked.reason, revoked.message) == (
        "token_revoked",
        "token 'ops' was revoked at 2026-12-02T13:00:00Z",
    )
    unknown = book.identify(TOKEN_PREFIX + "x" * 43, NOW)
    assert isinstance(unknown, Refused)
    assert unknown.reason == "token_invalid"


def test_a_revoked_bootstrap_secret_is_refused_and_a_new_one_is_a_new_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    bootstrap = bootstrap_digests("first-secret", "")
    assert store.book(bootstrap).identify("first-secret", NOW) == Caller(BOOTSTRAP_ADMIN, "admin")
    store.revoke(BOOTSTRAP_ADMIN, "alice@node", NOW, bootstrap_secret="first-secret")
    book = store.book(bootstrap)
    refused = book.identify("first-secret", NOW)
    assert isinstance(refused, Refused)
    assert refused.reason == "token_revoked"
    assert not book.has_admin
    rotated = store.book(bootstrap_digests("second-secret", ""))
    assert rotated.identify("second-secret", NOW) == Caller(BOOTSTRAP_ADMIN, "admin")
    assert rotated.has_admin
    with pytest.raises(ConfigError, match="revoked already"):
        store.revoke(BOOTSTRAP_ADMIN, "alice@node", NOW, bootstrap_secret="first-secret")
    with pytest.raises(ConfigError, match="no bootstrap token is set in this environment"):
        store.revoke(BOOTSTRAP_ADMIN, "alice@node", NOW, bootstrap_secret=None)


def test_reads_need_a_token_once_a_viewer_token_exists_even_an_expired_one(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    assert not store.book(()).reads_need_token
    store.create("ops", "admin", None, "a@n", NOW)
    assert not store.book(()).reads_need_token  # as before: an admin token alone keeps reads open
    assert store.book(bootstrap_digests("", "view")).reads_need_token
    store.create("wall", "viewer", timedelta(minutes=1), "a@n", NOW - timedelta(days=1))
    assert store.book(()).reads_need_token  # expired: reads do not open up by themselves
    store.revoke("wall", "a@n", NOW, open_reads=True)
    assert not store.book(()).reads_need_token  # revoked on purpose: the admin's choice


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Bad Name", "use 1 to 63 of a-z"),
        ("-dash", "use 1 to 63 of a-z"),
        ("x" * 64, "use 1 to 63 of a-z"),
        ("../etc", "use 1 to 63 of a-z"),
        (BOOTSTRAP_ADMIN, "bootstrap token of the server's settings"),
        (BOOTSTRAP_VIEWER, "bootstrap token of the server's settings"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        TokenStore(tmp_path).create(name, "admin", None, "a@n", NOW)
    assert not (tmp_path / "tokens.json").exists()


def test_a_name_is_never_reused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.create("ops", "admin", None, "a@n", NOW)
    store.revoke("ops", "a@n", NOW)
    before = store.path.read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        store.create("ops", "viewer", None, "a@n", NOW)
    assert store.path.read_bytes() == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("2w", timedelta(weeks=2))],
)  # fmt: skip
def test_lifetimes(text: str, expected: timedelta) -> None:
    assert parse_lifetime(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1y", "3651d", "1.5d", "9999999d"])
def test_bad_lifetimes_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--expires"):
        parse_lifetime(text)


GOOD_RECORD = {
    "name": "ops", "role": "admin", "sha256": "0" * 64, "created": "2026-12-01T00:00:00Z",
    "created_by": "a@n", "expires": None, "revoked": None, "revoked_by": None,
}  # fmt: skip


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "not valid UTF-8 JSON"),
        (b'{"format": "appliance-tokens/1", "tokens": [', "not valid UTF-8 JSON"),
        (b'{"format": "appliance-tokens/1", "format": "x", "tokens": []}', "appears twice"),
        (b'{"format": "other/1", "tokens": []}', "not a token book"),
        (b'{"format": "appliance-tokens/1", "tokens": {}}', "'tokens' must be a list"),
        (json.dumps({"format": "appliance-tokens/1", "tokens": [GOOD_RECORD | {"role": "root"}]}).encode(), "role must be one of"),
        (json.dumps({"format": "appliance-tokens/1", "tokens": [GOOD_RECORD | {"sha256": "AB"}]}).encode(), "sha256 must be"),
        (json.dumps({"format": "appliance-tokens/1", "tokens": [GOOD_RECORD | {"created": "yesterday"}]}).encode(), "RFC 3339"),
        (json.dumps({"format": "appliance-tokens/1", "tokens": [GOOD_RECORD, GOOD_RECORD]}).encode(), "appears twice"),
        (json.dumps({"format": "appliance-tokens/1", "tokens": ["ops"]}).encode(), "not an object"),
    ],
)  # fmt: skip
def test_a_bad_book_is_refused_in_one_line_and_the_server_keeps_only_bootstrap(
    tmp_path: Path, content: bytes, words: str
) -> None:
    store = TokenStore(tmp_path)
    store.path.write_bytes(content)
    store.path.chmod(0o640)
    with pytest.raises(ConfigError, match=words) as raised:
        store.records()
    assert "\n" not in str(raised.value)
    book = store.book(bootstrap_digests("boot", ""))
    assert book.damaged is not None
    assert book.identify("boot", NOW) == Caller(BOOTSTRAP_ADMIN, "admin")
    assert book.reads_need_token  # closed while the book cannot be read
    with pytest.raises(ConfigError):
        store.create("new", "admin", None, "a@n", NOW)  # nothing written over a damaged book
    assert store.path.read_bytes() == content


def test_a_book_others_may_change_is_refused(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    secret, _ = store.create("ops", "admin", None, "a@n", NOW)
    store.path.chmod(0o666)
    with pytest.raises(ConfigError, match=r"can be changed by other users \(mode 666\); chmod 644"):
        store.records()
    assert isinstance(store.book(()).identify(secret, NOW), Refused)


def test_a_worker_sees_a_new_and_a_revoked_token_after_the_recheck_interval(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    clock = [100.0]
    gate = TokenGate(store, (), clock=lambda: clock[0])
    secret, _ = store.create("ops", "admin", None, "a@n", datetime.now(UTC))
    assert isinstance(gate.identify(secret), Refused)  # not looked again yet
    clock[0] += 0.5
    assert gate.identify(secret) == Caller("ops", "admin")
    assert store.last_used("ops") is not None
    store.revoke("ops", "a@n", datetime.now(UTC))
    clock[0] += 0.5
    refused = gate.identify(secret)
    assert isinstance(refused, Refused)
    assert refused.reason == "token_revoked"


def test_a_use_that_cannot_be_recorded_costs_only_the_record(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    secret, _ = store.create("ops", "admin", None, "a@n", datetime.now(UTC))
    store.used_dir.rmdir()
    store.used_dir.write_text("a file where the folder was")  # mark_used fails
    warnings: list[str] = []
    gate = TokenGate(store, (), warn=warnings.append)
    assert gate.identify(secret) == Caller("ops", "admin")
    assert len(warnings) == 1
    assert "cannot record the use of token 'ops'" in warnings[0]


def test_a_token_book_is_the_same_with_or_without_the_bootstrap() -> None:
    assert TokenBook().identify("anything", NOW) == Refused("token_invalid", "token not valid")


@pytest.mark.parametrize(
    ("env", "user"),
    [({INVOKED_BY_ENV: "alice", "SUDO_USER": "bob"}, "alice"), ({"SUDO_USER": "bob"}, "bob")],
)
def test_the_local_actor_is_the_invoking_user(env: dict[str, str], user: str) -> None:
    actor = local_actor(env)
    assert actor.user == user
    assert actor.label().startswith(f"{user}@")
    assert actor.as_json()["via"] == "cli"


def test_the_last_viewer_token_is_revoked_only_with_open_reads(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.create("wall", "viewer", None, "a@n", NOW)
    store.create("kiosk", "viewer", None, "a@n", NOW)
    store.revoke("kiosk", "a@n", NOW)  # another viewer token remains: reads stay closed
    before = store.path.read_bytes()
    with pytest.raises(ConfigError, match="last viewer token: revoking it opens the read"):
        store.revoke("wall", "a@n", NOW)
    assert store.path.read_bytes() == before
    assert store.book(()).reads_need_token
    store.revoke("wall", "a@n", NOW, open_reads=True)
    assert not store.book(()).reads_need_token


def test_a_damaged_book_refuses_named_tokens_as_a_fault_of_the_node(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    secret, _ = store.create("ops", "admin", None, "a@n", NOW)
    store.path.write_text("{")
    refused = store.book(()).identify(secret, NOW)
    assert isinstance(refused, Refused)
    assert refused.reason == "token-book-unusable"


def test_a_bootstrap_record_that_is_not_revoked_is_refused(tmp_path: Path) -> None:
    record = GOOD_RECORD | {"name": "bootstrap"}
    (tmp_path / "tokens.json").write_text(
        json.dumps({"format": "appliance-tokens/1", "tokens": [record]})
    )
    (tmp_path / "tokens.json").chmod(0o640)
    with pytest.raises(ConfigError, match="can only appear revoked"):
        TokenStore(tmp_path).records()


def test_a_restored_book_keeps_the_revocations_made_since_its_backup(tmp_path: Path) -> None:
    now = TokenStore(tmp_path / "now")
    secret, _ = now.create("ops", "admin", None, "a@n", NOW)
    viewer, _ = now.create("wall", "viewer", None, "a@n", NOW)
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "tokens.json").write_bytes(now.path.read_bytes())  # the book when backed up
    (backup / "tokens.json").chmod(0o640)
    now.create("late", "admin", None, "a@n", NOW)  # made after the backup, then revoked
    late = now.records()[-1]
    now.revoke("late", "a@n", NOW)
    now.revoke("ops", "a@n", NOW)
    now.revoke(BOOTSTRAP_ADMIN, "a@n", NOW, bootstrap_secret="boot")
    restored = TokenStore(backup)
    assert restored.keep_revocations(now.records(), "restore@n") == 3
    book = restored.book(bootstrap_digests("boot", ""))
    for refused in (secret, "boot"):
        found = book.identify(refused, NOW)
        assert isinstance(found, Refused) and found.reason == "token_revoked"
    assert book.identify(viewer, NOW) == Caller("wall", "viewer")
    assert any(r.sha256 == late.sha256 and r.revoked for r in restored.records())
    assert restored.keep_revocations(now.records(), "restore@n") == 0  # a second time: nothing
