"""The support bundle's scrubbing and its node facts, and what it shares with the installer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

from appliance.data import watch
from appliance.support import support_bundle as sb

REPO = Path(__file__).resolve().parents[2]


def test_scrub_takes_out_private_keys_secret_settings_and_known_secrets() -> None:
    text = (
        "APPLIANCE_ADMIN_TOKEN=abc\nexport MY_PASSWORD='p w'\nEnvironment=API_KEY=k\n"
        "APPLIANCE_PORT=8080\nthe-known-secret-value in a log line\n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    scrubbed = sb.scrub(text, ["the-known-secret-value"])
    assert scrubbed.splitlines() == [
        "APPLIANCE_ADMIN_TOKEN=<redacted>",
        "export MY_PASSWORD=<redacted>",
        "Environment=API_KEY=<redacted>",
        "APPLIANCE_PORT=8080",
        "<redacted> in a log line",
        "<redacted> private key",
    ]


def test_node_secrets_are_the_token_files_and_secret_settings_not_short_words(
    tmp_path: Path,
) -> None:
    (tmp_path / "admin.token").write_text("a-long-admin-token-value\n")
    (tmp_path / "viewer.token").write_text("short\n")  # too short to search for
    (tmp_path / sb.SERVER_ENV).write_text(
        "APPLIANCE_X_SECRET='quoted-secret-1'\nAPPLIANCE_ADMIN_TOKEN_FILE=/etc/x\n"
    )
    found = sb.node_secrets(sb.NodePaths(config=tmp_path), {"OTHER_PASSWORD": "env-password-1"})
    assert set(found) == {"a-long-admin-token-value", "quoted-secret-1", "env-password-1"}


def test_last_lines_reads_the_end_of_a_file(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    assert sb.last_lines(log, 3) == "line 99997\nline 99998\nline 99999\n"
    assert sb.last_lines(tmp_path.joinpath("log"), 1) == "line 99999\n"


def test_the_node_folders_and_inbox_names_are_the_installers_and_the_watchers() -> None:
    shared = yaml.safe_load((REPO / "ansible" / "group_vars" / "all.yml").read_text())
    assert shared["appliance_config_dir"] == sb.CONFIG_DIR
    assert shared["appliance_data_dir"] == sb.DATA_DIR
    assert shared["appliance_log_dir"] == sb.LOG_DIR
    assert shared["appliance_root"] == sb.ROOT_DIR
    defaults = REPO / "ansible" / "roles" / "appliance_importer" / "defaults" / "main.yml"
    assert (
        list(sb.INBOX_DIRS) == yaml.safe_load(defaults.read_text())["appliance_importer_inbox_dirs"]
    )
    assert sb.REJECTED_DIR == watch.REJECTED_DIR
    assert sb.REASON_SUFFIX == watch.REASON_SUFFIX


def test_the_support_package_imports_the_standard_library_only() -> None:
    """install.sh runs it from the wheel with python3 -S: no third-party module may be needed."""
    allowed = set(sys.stdlib_module_names) | {"appliance"}
    for source in (REPO / "appliance" / "support").glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed, f"{source.name} imports {name}"
                if top == "appliance":
                    assert name.startswith("appliance.support"), f"{source.name} imports {name}"
