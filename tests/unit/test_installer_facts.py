"""Facts the installer (install.sh, ansible/) must write again in its own language, compared with
their one home: the bundle format (appliance/bundles/bundle_layout.py), the server image as the builder
makes it (bundle/layout.py), and each role's defaults against what its argument spec documents."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.bundles import bundle_layout
from bundle import layout

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "install.sh"
ANSIBLE = REPO / "ansible"
ROLES = sorted(path.parent.parent for path in ANSIBLE.glob("roles/*/defaults/main.yml"))

GOOD_VERSIONS = ["1.0.0", "0.1.0", "1.2.0-rc1", "2024.05.01", "v2", "A_b-c.d", "7", "1" * 64]
BAD_VERSIONS = [
    "",
    ".1",
    "-1",
    "_1",
    "1.0 beta",
    "1.0+local",
    "1.0~rc1",
    "1/0",
    "../1",
    "1" * 65,
    "1.0\n",
    "\n1.0",
    "é1",
    "1.0é",
    "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to Unicode, not to the pattern
]


def shell_assignment(name: str) -> str:
    """The value install.sh assigns to `name` at top level (single-quoted or bare)."""
    text = INSTALL_SH.read_text(encoding="utf-8")
    match = re.search(rf"^{name}='([^']*)'|^{name}=(\S+)", text, re.MULTILINE)
    assert match, f"install.sh assigns no {name}"
    return match[1] if match[1] is not None else match[2]


def shell_default(name: str) -> str:
    """The default of a `NAME=${ENV:-default}` line of install.sh."""
    value = shell_assignment(name)
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    assert match, f"install.sh's {name} is not of the form ${{ENV:-default}}: {value}"
    return match[1]


def bash_accepts(pattern: str, versions: list[str]) -> list[bool]:
    """For each version, whether `[[ $version =~ $pattern ]]` holds, as install.sh tests it."""
    script = (
        'p=$1; shift; for v in "$@"; do if [[ "$v" =~ $p ]]; then echo 1; else echo 0; fi; done'
    )
    result = subprocess.run(
        ["bash", "-c", script, "bash", pattern, *versions],
        capture_output=True,
        text=True,
        check=True,
        env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )
    return [line == "1" for line in result.stdout.splitlines()]


def yaml_file(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_install_sh_accepts_the_versions_the_bundle_format_accepts() -> None:
    versions = GOOD_VERSIONS + BAD_VERSIONS
    python = [bundle_layout.VERSION_PATTERN.fullmatch(v) is not None for v in versions]
    assert python == [True] * len(GOOD_VERSIONS) + [False] * len(BAD_VERSIONS)
    assert bash_accepts(shell_assignment("VERSION_PATTERN"), versions) == python


def test_install_sh_verifies_in_the_bundle_signature_namespace() -> None:
    assert shell_assignment("NAMESPACE") == bundle_layout.SIGNATURE_NAMESPACE


def test_install_sh_and_the_playbooks_use_the_same_node_folders() -> None:
    shared = yaml_file(ANSIBLE / "group_vars" / "all.yml")
    assert shell_default("CONFIG_DIR") == shared["appliance_config_dir"]
    assert shell_default("LOG_DIR") == shared["appliance_log_dir"]


def test_the_playbooks_know_the_server_image_as_the_builder_makes_it() -> None:
    shared = yaml_file(ANSIBLE / "group_vars" / "all.yml")
    assert shared["appliance_user"] == layout.IMAGE_USER
    assert shared["appliance_uid"] == layout.IMAGE_USER_ID
    assert shared["appliance_image_name"] == layout.SERVER_IMAGE_NAME
    assert shared["appliance_image_data_dir"] == layout.IMAGE_DATA_DIR
    assert shared["appliance_image_pack_signers"] == layout.IMAGE_PACK_SIGNERS
    assert Path(shared["appliance_image_admin_token"]).parent == Path(layout.IMAGE_CONFIG_DIR)


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_a_role_documents_each_default_as_it_sets_it(role: Path) -> None:
    defaults = yaml_file(role / "defaults" / "main.yml")
    options = yaml_file(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    documented = {name: spec["default"] for name, spec in options.items() if "default" in spec}
    assert documented == defaults


def test_the_server_defaults_are_the_ports_and_paths_the_image_and_the_playbooks_use() -> None:
    from appliance import settings

    shared = yaml_file(ANSIBLE / "group_vars" / "all.yml")
    assert int(settings.PORT.default) == layout.IMAGE_PORT == shared["appliance_port"]
    assert settings.DATA_DIR.default == layout.IMAGE_DATA_DIR == shared["appliance_data_dir"]
