"""The trust update's facts as install.sh and the trust role write them again, compared with
their one home, appliance/trust/trust_layout.py."""

from __future__ import annotations

import re

from appliance.trust import trust_layout as layout
from tests.unit.test_installer_facts import ANSIBLE, INSTALL_SH, shell_assignment, yaml_file


def quoted_assignment(name: str) -> str:
    """The value of a top-level `NAME="..."` line of install.sh."""
    match = re.search(rf'^{name}="([^"]*)"', INSTALL_SH.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"install.sh assigns no {name}"
    return match[1]


def test_install_sh_reads_trust_updates_as_the_format_has_them() -> None:
    assert shell_assignment("TRUST_NAMESPACE") == layout.SIGNATURE_NAMESPACE
    assert shell_assignment("TRUST_FORMAT") == layout.FORMAT_NAME
    assert quoted_assignment("TRUST_MEMBERS").split() == list(layout.UPDATE_MEMBERS)


def test_install_sh_finds_the_revocation_list_and_serial_where_the_node_keeps_them() -> None:
    assert quoted_assignment("INSTALLED_SIGNERS") == (
        f"$CONFIG_DIR/{layout.NODE_SIGNERS[layout.ROLE_BUNDLE]}"
    )
    assert quoted_assignment("INSTALLED_REVOKED") == f"$INSTALLED_SIGNERS{layout.REVOKED_SUFFIX}"
    assert quoted_assignment("INSTALLED_SERIAL") == f"$INSTALLED_SIGNERS{layout.SERIAL_SUFFIX}"


def test_the_trust_role_keeps_each_role_where_the_trust_commands_look() -> None:
    defaults = yaml_file(ANSIBLE / "roles" / "appliance_trust" / "defaults" / "main.yml")
    shared = yaml_file(ANSIBLE / "group_vars" / "all.yml")
    assert shared["appliance_config_dir"] == layout.NODE_CONFIG_DIR
    assert defaults["appliance_trust_bundle_signers"] == (
        "{{ appliance_config_dir }}/" + layout.NODE_SIGNERS[layout.ROLE_BUNDLE]
    )
    # The pack role's files are in a folder of their own, which the importer's unit may write.
    assert defaults["appliance_trust_pack_signers"] == "{{ appliance_pack_signers }}"
    assert shared["appliance_pack_trust_dir"] == (
        "{{ appliance_config_dir }}/" + layout.NODE_PACK_TRUST_DIR
    )
    assert layout.NODE_SIGNERS[layout.ROLE_PACK].startswith(f"{layout.NODE_PACK_TRUST_DIR}/")
    assert shared["appliance_pack_signers"] == (
        "{{ appliance_pack_trust_dir }}/"
        + layout.NODE_SIGNERS[layout.ROLE_PACK].removeprefix(f"{layout.NODE_PACK_TRUST_DIR}/")
    )
    assert shared["appliance_image_pack_signers"] == (
        f"{layout.NODE_CONFIG_DIR}/{layout.NODE_SIGNERS[layout.ROLE_PACK]}"
    )


def test_the_importer_may_write_the_pack_trust_and_nothing_else_of_the_configuration() -> None:
    unit = (
        ANSIBLE / "roles" / "appliance_importer" / "templates" / "appliance-importer.service.j2"
    ).read_text(encoding="utf-8")
    line = next(line for line in unit.splitlines() if line.startswith("ReadWritePaths="))
    writable = re.findall(r"\{\{ (\w+)", line)
    assert writable[:2] == ["appliance_data_dir", "appliance_pack_trust_dir"]
    assert not any("appliance_config_dir" in path for path in writable)
    assert "ProtectSystem=strict" in unit
    assert "Environment=APPLIANCE_SIGNERS={{ appliance_pack_signers }}" in unit
