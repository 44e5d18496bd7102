"""install.sh --stage, run for real: what a fleet run has each node do before anything changes.

`--stage DIR` makes the checks of an install (signature and checksums with ssh-keygen and
sha256sum, the node's release and Python) and leaves in DIR the playbook's variables and the
trust files they name, for ansible/fleet-install.yml to run the roles over SSH. A refused
bundle leaves no DIR behind; nothing else on the node changes either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.bundles import bundle_layout as layout
from tests.integration.test_bundle_build import (
    TREE_VERSION,
    assert_one_error_line,
    run_install_sh,
    signed_tree,
)


def test_stage_verifies_and_leaves_the_playbooks_variables(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    key, allowed, principal, fingerprint = release_key
    tree = signed_tree(tmp_path / "stick", key)
    packs = tmp_path / "pack_signers"
    packs.write_text('ml@workstation namespaces="appliance-result-pack" ssh-ed25519 AAAA\n')
    stage = tmp_path / "stage"
    result = run_install_sh(
        tree, tmp_path, "--stage", stage, "--signers", allowed, "--pack-signers", packs
    )
    assert result.returncode == 0, result.stderr
    assert f"staged: appliance {TREE_VERSION} verified for this node" in result.stderr
    assert "running ansible" not in result.stderr  # no playbook, no Ansible set up
    variables = json.loads((stage / "vars.json").read_text())
    assert variables["appliance_bundle_dir"] == str(tree)
    assert variables["appliance_bundle_version"] == TREE_VERSION
    assert variables["appliance_bundle_signer"] == principal
    assert variables["appliance_bundle_signer_fingerprint"] == fingerprint
    assert variables["appliance_target_name"] in {t.name for t in layout.NODE_TARGETS}
    # The trust files it verified with, in the stage (install.sh's own temporary folder goes).
    assert variables["appliance_trust_bundle_signers_src"] == str(stage / "bundle_signers")
    assert (stage / "bundle_signers").read_bytes() == allowed.read_bytes()
    assert variables["appliance_trust_pack_signers_src"] == str(stage / "pack_signers")
    assert (stage / "pack_signers").read_bytes() == packs.read_bytes()
    assert variables["appliance_trust_update_file"] == ""
    assert stage.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "etc").exists() and not (tmp_path / "opt").exists()


def test_stage_with_a_fingerprint_stages_the_release_line_it_made(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    key, _, _, fingerprint = release_key
    tree = signed_tree(tmp_path / "stick", key)
    stage = tmp_path / "stage"
    result = run_install_sh(tree, tmp_path, "--stage", stage, "--trust-fingerprint", fingerprint)
    assert result.returncode == 0, result.stderr
    line = (stage / "bundle_signers").read_text()
    assert line.startswith('release namespaces="appliance-bundle,appliance-trust" ssh-ed25519 ')
    assert json.loads((stage / "vars.json").read_text())["appliance_bundle_signer"] == "release"


def test_a_refused_bundle_leaves_no_stage(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    key, allowed, _, _ = release_key
    tree = signed_tree(tmp_path / "stick", key)
    (tree / layout.MANIFEST).write_text('{"version": "9.9.9", "targets": []}')  # after signing
    stage = tmp_path / "stage"
    result = run_install_sh(tree, tmp_path, "--stage", stage, "--signers", allowed)
    assert_one_error_line(result, 3, "checksum check failed", layout.MANIFEST)
    assert not stage.exists()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("existing", "already exists: give a new folder"),
        ("dangling-link", "already exists: give a new folder"),
        ("inside", "is inside the bundle"),
        ("no-parent", "no folder"),
        ("", "--stage needs a folder"),
    ],
)
def test_stage_refuses_a_folder_it_cannot_own_in_one_line(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], where: str, message: str
) -> None:
    key, allowed, _, _ = release_key
    tree = signed_tree(tmp_path / "stick", key)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep").write_text("mine")
    folders: dict[str, str | Path] = {
        "existing": existing,
        "inside": tree / "stage",
        "no-parent": tmp_path / "absent" / "stage",
        "dangling-link": tmp_path / "link",
        "": "",
    }
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    result = run_install_sh(tree, tmp_path, "--stage", folders[where], "--signers", allowed)
    assert_one_error_line(result, 2, message)
    assert (existing / "keep").read_text() == "mine"
    assert not (tree / "stage").exists()


def test_stage_goes_with_no_other_action_and_not_with_check(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    key, allowed, _, _ = release_key
    tree = signed_tree(tmp_path / "stick", key)
    stage = tmp_path / "stage"
    both = run_install_sh(tree, tmp_path, "--stage", stage, "--rollback")
    assert_one_error_line(both, 2, "choose one action")
    checked = run_install_sh(tree, tmp_path, "--stage", stage, "--check", "--signers", allowed)
    assert_one_error_line(checked, 2, "--check and --stage")
    assert not stage.exists()


def test_stage_of_another_folder_runs_nothing_of_that_folder_before_it_is_verified(
    tmp_path: Path, release_key: tuple[Path, Path, str, str]
) -> None:
    """What a fleet run does: the controller's install.sh checks the node's copy of the bundle."""
    key, allowed, _, _ = release_key
    checker = signed_tree(tmp_path / "controller", key)
    copy = signed_tree(tmp_path / "node", key)
    stage = tmp_path / "stage"
    good = run_install_sh(
        checker, tmp_path, "--stage", stage, "--bundle", copy, "--signers", allowed
    )
    assert good.returncode == 0, good.stderr
    assert json.loads((stage / "vars.json").read_text())["appliance_bundle_dir"] == str(copy)
    # The copy's own install.sh changed after signing: refused, and never run.
    ran = tmp_path / "the-copy-ran"
    script = copy / layout.INSTALL_SCRIPT
    script.write_text(f"touch {ran}\n" + script.read_text())
    again = tmp_path / "stage-again"
    bad = run_install_sh(
        checker, tmp_path, "--stage", again, "--bundle", copy, "--signers", allowed
    )
    assert_one_error_line(bad, 3, "checksum check failed", layout.INSTALL_SCRIPT)
    assert not ran.exists() and not again.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--bundle", "{tmp}/absent", "--stage", "{tmp}/stage"],
            "--bundle {tmp}/absent: no such folder",
        ),
        (["--bundle", "{tmp}", "--rollback"], "--bundle goes with --stage only"),
        (["--stage", "{tmp}/stage", "--bundle"], "--bundle needs a folder"),
    ],
)
def test_bundle_is_refused_in_one_line_where_it_cannot_apply(
    tmp_path: Path, release_key: tuple[Path, Path, str, str], args: list[str], message: str
) -> None:
    key, allowed, _, _ = release_key
    tree = signed_tree(tmp_path / "stick", key)
    given = [arg.format(tmp=tmp_path) for arg in args]
    result = run_install_sh(tree, tmp_path, "--signers", allowed, *given)
    assert_one_error_line(result, 2, message.format(tmp=tmp_path))
    assert not (tmp_path / "stage").exists()
