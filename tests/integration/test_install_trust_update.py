"""install.sh --trust-update and the revocation list, run for real (bash, tar, ssh-keygen, python3).

The release key is rotated with a trust update carried beside the bundle: a bundle signed by the
new key verifies, one signed by the retired key after its valid-before, or by a revoked key, is
refused, and every hostile update is refused in one line with nothing on the node changed.
Nothing here gets as far as the playbook (the small trees have no wheels): the lines install.sh
prints on its way say how far it got.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.trust import trust_layout as layout
from appliance.trust.trust_update import TrustUpdate
from tests.integration.test_bundle_build import assert_one_error_line, run_install_sh, signed_tree
from tests.unit.test_trust_update import (
    BUNDLE_NS,
    ISSUED,
    PACK_NS,
    TRUST_NS,
    Key,
    new_key,
    raw_update,
    write_update,
)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Key]:
    folder = tmp_path / "keys"
    return {name: new_key(folder, name) for name in ("old", "new", "stranger")}


@pytest.fixture
def etc(tmp_path: Path, keys: dict[str, Key]) -> Path:
    """The node's /etc/appliance (APPLIANCE_CONFIG_DIR): the old release key, may sign trust."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "bundle_signers").write_text(keys["old"].line("release", BUNDLE_NS, TRUST_NS))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def rotation(keys: dict[str, Key], old_window: str = "") -> str:
    return keys["old"].line("release", BUNDLE_NS, TRUST_NS, window=old_window) + keys["new"].line(
        "release", BUNDLE_NS, TRUST_NS
    )


def verified_with(result: subprocess.CompletedProcess[str], key: Key) -> bool:
    """Whether install.sh got past the signature and the checksums, signed by `key`."""
    good = f"signature good: release ({key.public.fingerprint})"
    return good in result.stderr and "every file matches SHA256SUMS" in result.stderr


def test_a_bundle_signed_by_the_new_key_installs_after_the_trust_update(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    tree = signed_tree(tmp_path / "stick", keys["new"].path)
    before = snapshot(etc)
    refused = run_install_sh(tree, tmp_path)
    assert_one_error_line(refused, 3, "SHA256SUMS.sig is not signed by a trusted key")
    update = write_update(tmp_path / "stick", keys["old"], rotation(keys))
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert "trust update good: role bundle, serial 0 -> 1, signed by release" in result.stderr
    assert verified_with(result, keys["new"]), result.stderr
    assert snapshot(etc) == before  # the playbook applies it, not the checks before it


def test_the_old_key_still_verifies_during_the_overlap(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    tree = signed_tree(tmp_path / "stick", keys["old"].path)
    update = write_update(tmp_path, keys["old"], rotation(keys, 'valid-before="29990101Z"'))
    assert verified_with(run_install_sh(tree, tmp_path, "--trust-update", update), keys["old"])


def test_a_bundle_signed_by_the_retired_key_after_its_valid_before_is_refused(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    tree = signed_tree(tmp_path / "stick", keys["old"].path)
    update = write_update(tmp_path, keys["old"], rotation(keys, 'valid-before="20261130Z"'))
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert_one_error_line(
        result,
        3,
        "SHA256SUMS.sig is signed by a key the node trusts only in a window: key has expired",
    )
    assert not verified_with(result, keys["old"])


def test_a_bundle_signed_by_a_revoked_key_is_refused_naming_the_revocation(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    """The node's own revocation list, though bundle_signers still names the key."""
    (etc / "bundle_signers.revoked").write_text(keys["old"].public.openssh_line() + "\n")
    tree = signed_tree(tmp_path / "stick", keys["old"].path)
    result = run_install_sh(tree, tmp_path)
    assert_one_error_line(
        result, 3, "SHA256SUMS.sig is signed by a revoked key", "bundle_signers.revoked"
    )


def test_a_trust_update_revokes_the_key_it_retires(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    tree = signed_tree(tmp_path / "stick", keys["old"].path)
    revoked = keys["old"].public.openssh_line() + "\n"
    update = write_update(tmp_path, keys["old"], rotation(keys), revoked=revoked)
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert_one_error_line(result, 3, "signed by a revoked key", "of --trust-update update.trust")


def test_the_same_update_again_is_no_replay_once_applied(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    """A second run of the same install: the update's trust is the node's already."""
    (etc / "bundle_signers").write_text(rotation(keys))
    (etc / "bundle_signers.serial").write_text("1\n")
    tree = signed_tree(tmp_path / "stick", keys["new"].path)
    update = write_update(tmp_path, keys["old"], rotation(keys))
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert "trust update serial 1 is already applied" in result.stderr
    assert verified_with(result, keys["new"]), result.stderr


def hostile(tmp_path: Path, keys: dict[str, Key], etc: Path, kind: str) -> Path:  # noqa: PLR0911 (one return per kind)
    """A trust update that install.sh must refuse, of the kind named."""
    stick = tmp_path / "stick"
    stick.mkdir(exist_ok=True)
    if kind == "untrusted":
        return write_update(
            stick, keys["stranger"], keys["stranger"].line("release", BUNDLE_NS, TRUST_NS)
        )
    if kind in ("lower-serial", "replay"):
        (etc / "bundle_signers.serial").write_text("5\n")
        return write_update(
            stick, keys["old"], rotation(keys), serial=3 if kind == "lower-serial" else 5
        )
    if kind == "truncated":
        path = write_update(stick, keys["old"], rotation(keys))
        path.write_bytes(path.read_bytes()[:1200])
        return path
    if kind == "duplicate-keys":
        good = TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, rotation(keys), "").to_bytes()
        return raw_update(
            stick, keys["old"], good.replace(b'"serial": 1,', b'"serial": 1, "serial": 9,')
        )
    if kind == "grants-packs":
        signers = keys["new"].line("release", PACK_NS, TRUST_NS)
        return raw_update(
            stick, keys["old"], TrustUpdate(layout.ROLE_BUNDLE, 1, ISSUED, signers, "").to_bytes()
        )
    if kind == "role-pack":
        signers = keys["new"].line("ml", PACK_NS, TRUST_NS)
        return write_update(stick, keys["old"], signers, role=layout.ROLE_PACK)
    if kind == "signer-without-trust-namespace":
        (etc / "bundle_signers").write_text(keys["old"].line("release", BUNDLE_NS))
        return write_update(stick, keys["old"], rotation(keys))
    if kind == "not-a-tar":
        path = stick / "junk.trust"
        path.write_bytes(b"{}\n")
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("untrusted", "is not signed by a trusted key"),
        ("lower-serial", "serial 3 is older than the applied serial 5"),
        ("replay", "serial 5 of role bundle is already applied (a replay)"),
        ("truncated", "update.trust"),
        ("duplicate-keys", "key 'serial' appears twice"),
        ("grants-packs", "grants appliance-result-pack, beyond role bundle"),
        ("role-pack", "role 'pack' is not bundle"),
        ("signer-without-trust-namespace", "signature check failed"),
        ("not-a-tar", "not a trust update"),
    ],
)
def test_a_hostile_trust_update_is_refused_in_one_line_with_nothing_changed(
    tmp_path: Path, keys: dict[str, Key], etc: Path, kind: str, says: str
) -> None:
    update = hostile(tmp_path, keys, etc, kind)
    tree = signed_tree(tmp_path / "stick", keys["new"].path)
    before = snapshot(etc)
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert_one_error_line(result, 3, "--trust-update", says)
    assert snapshot(etc) == before
    assert not (tmp_path / "opt").exists()


def test_a_signer_line_allowing_every_namespace_may_not_sign_trust(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    """ssh-keygen accepts the signature (no namespaces= allows any); the rule needs it named."""
    (etc / "bundle_signers").write_text(f"release {keys['old'].public.openssh_line()}\n")
    update = write_update(tmp_path, keys["old"], rotation(keys))
    tree = signed_tree(tmp_path / "stick", keys["new"].path)
    result = run_install_sh(tree, tmp_path, "--trust-update", update)
    assert_one_error_line(result, 3, "its line does not name namespace appliance-trust")


def test_trust_update_goes_with_an_install_only(
    tmp_path: Path, keys: dict[str, Key], etc: Path
) -> None:
    update = write_update(tmp_path, keys["old"], rotation(keys))
    tree = signed_tree(tmp_path / "stick", keys["new"].path)
    result = run_install_sh(tree, tmp_path, "--rollback", "--trust-update", update)
    assert_one_error_line(result, 2, "--trust-update goes with an install or upgrade only")


def test_a_key_trusted_by_fingerprint_may_sign_the_update_that_rotates_it(
    tmp_path: Path, keys: dict[str, Key]
) -> None:
    """A first install with --trust-fingerprint trusts the release key for appliance-trust too."""
    tree = signed_tree(tmp_path / "stick", keys["old"].path)  # its signer.pub is the old key
    update = write_update(tmp_path, keys["old"], rotation(keys))
    fingerprint = keys["old"].public.fingerprint
    result = run_install_sh(
        tree, tmp_path, "--trust-fingerprint", fingerprint, "--trust-update", update
    )
    assert "trust update good: role bundle, serial 0 -> 1" in result.stderr, result.stderr
    assert verified_with(result, keys["old"]), result.stderr
