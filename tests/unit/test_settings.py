"""Settings: every one documented, read from the environment, bad values refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import SETTINGS, default_workers, load_server_settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = (DOCS / "configuration.md").read_text()
    for setting in SETTINGS:
        row = next((line for line in reference.splitlines() if f"`{setting.env}`" in line), None)
        assert row is not None, f"{setting.env} is not in docs/configuration.md"
        assert (f"`{setting.default}`" if setting.default else "(empty)") in row, setting.env


def test_import_and_watch_settings_are_in_the_admin_guide() -> None:
    guide = (DOCS / "admin-guide.md").read_text()
    for env in (
        "APPLIANCE_DATA_DIR",
        "APPLIANCE_SIGNERS",
        "APPLIANCE_WATCH_INTERVAL",
        "APPLIANCE_IMPORT_MEMORY",
        "APPLIANCE_IMPORT_THREADS",
    ):
        assert env in guide, env


def test_defaults_need_no_environment() -> None:
    settings = load_server_settings({})
    assert settings.port == 8080
    assert settings.workers == default_workers()
    assert settings.admin_token == ""
    assert settings.run_dir == Path("/var/lib/appliance/run/local")


def test_token_files_win_and_are_read_from_their_first_line(tmp_path: Path) -> None:
    token = tmp_path / "admin.token"
    token.write_text("from-file\nignored\n")
    token.chmod(0o600)
    settings = load_server_settings(
        {"APPLIANCE_ADMIN_TOKEN": "from-env", "APPLIANCE_ADMIN_TOKEN_FILE": str(token)}
    )
    assert settings.admin_token == "from-file"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"APPLIANCE_PORT": "eighty"},
            "APPLIANCE_PORT='eighty': must be a whole number from 1 to 65535",
        ),
        ({"APPLIANCE_PORT": "70000"}, "from 1 to 65535"),
        ({"APPLIANCE_WORKERS": "-1"}, "APPLIANCE_WORKERS"),
        ({"APPLIANCE_RATE_LIMIT": "lots"}, "APPLIANCE_RATE_LIMIT"),
        ({"APPLIANCE_DUCKDB_MEMORY": "a lot"}, "APPLIANCE_DUCKDB_MEMORY: must be a size"),
        ({"APPLIANCE_LOG_LEVEL": "chatty"}, "must be one of debug, info, warning, error"),
        ({"APPLIANCE_ADMIN_TOKEN_FILE": "/nonexistent/token"}, "cannot read /nonexistent/token"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_server_settings(env)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="holds no token"):
        load_server_settings({"APPLIANCE_VIEWER_TOKEN_FILE": str(empty)})


@pytest.mark.parametrize(
    ("mode", "words"),
    [(0o644, "read or changed"), (0o620, "read or changed"), (0o602, "read or changed")],
)
def test_a_token_file_others_may_read_or_change_is_refused(
    tmp_path: Path, mode: int, words: str
) -> None:
    token = tmp_path / "admin.token"
    token.write_text("s3cret\n")
    token.chmod(mode)
    with pytest.raises(
        ConfigError,
        match=f"APPLIANCE_ADMIN_TOKEN_FILE: .* can be {words} by other users \\(mode {mode:o}\\); chmod 640",
    ):
        load_server_settings({"APPLIANCE_ADMIN_TOKEN_FILE": str(token)})
    token.chmod(0o640)
    assert load_server_settings({"APPLIANCE_ADMIN_TOKEN_FILE": str(token)}).admin_token == "s3cret"
