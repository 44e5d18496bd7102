"""`appliance token` as an admin runs it: one-line errors with exit codes, nothing half-made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.access.tokens import TokenStore
from tests.conftest import run


def token(data_dir: Path, *argv: str) -> tuple[int, str, str]:
    done = run("appliance", "token", *argv, "--data-dir", data_dir)
    return done.returncode, done.stdout, done.stderr


def test_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = token(data, "create", "ops", "--role", "admin", "--expires", "90d")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("apl_") and "\n" not in secret
    assert "made admin token 'ops' (expires " in err
    code, out, _ = token(data, "list", "--json")
    (listed,) = json.loads(out)["tokens"]
    assert (listed["name"], listed["role"], listed["state"]) == ("ops", "admin", "active")
    assert secret not in out and "sha256" not in listed
    assert token(data, "revoke", "ops")[0] == 0
    code, out, _ = token(data, "list")
    assert "ops" in out and "revoked" in out
    code, _, err = token(data, "revoke", "ops")
    assert code == 2 and err.startswith("error: token 'ops' was revoked already")
    code, _, err = token(data, "revoke", "nobody")
    assert code == 2 and "no token named 'nobody'" in err


def test_a_token_whose_creation_cannot_be_recorded_is_not_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert token(data, "create", "first", "--role", "viewer")[0] == 0
    trail = data / "history.jsonl"
    trail.unlink()
    trail.mkdir()  # the trail cannot be appended to: a fault of the node
    code, out, err = token(data, "create", "second", "--role", "admin")
    assert code == 4, err
    assert out == ""  # no secret printed for a token that does not exist
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert [r.name for r in TokenStore(data).records()] == ["first"]


def test_a_book_others_may_change_stops_every_command(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert token(data, "create", "ops", "--role", "admin")[0] == 0
    (data / "tokens.json").chmod(0o666)
    for argv in (("list",), ("create", "x", "--role", "admin"), ("revoke", "ops")):
        code, _, err = token(data, *argv)
        assert code == 2, (argv, err)
        assert "can be changed by other users (mode 666); chmod 644" in err
        assert "Traceback" not in err


def test_usage_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for argv, words in (
        (("create", "ops"), "Missing option '--role'"),
        (("create", "ops", "--role", "root"), "'root' is not one of 'viewer', 'admin'"),
        (("create", "ops", "--role", "admin", "--expires", "forever"), "--expires 'forever'"),
        (("create", "../x", "--role", "admin"), "token name '../x'"),
        (("create", "bootstrap", "--role", "admin"), "bootstrap token of the server's settings"),
    ):
        code, _, err = token(data, *argv)
        assert code == 2 and words in err, (argv, err)
    assert not (data / "tokens.json").exists()


def test_root_does_not_write_into_a_data_dir_another_user_owns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root: the refusal is of root writing as another user's store")
    os.chown(data, 65534, 65534)
    code, out, err = token(data, "create", "ops", "--role", "admin")
    assert code == 2 and "belongs to uid 65534: run this as that user" in err
    assert out == "" and not (data / "tokens.json").exists()
