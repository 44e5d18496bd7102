"""Bundle verification (appliance verify) across a release key rotation, and with a revoked key.

The same verdicts as install.sh's stock tools (tests/integration/test_install_trust_update.py):
after the trust update a bundle signed by the new key verifies; the retired key is refused once
past its valid-before; a revoked key is refused by our code and by `ssh-keygen -Y verify -r`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.bundles.bundle_verify import verify_bundle
from appliance.errors import BundleRejected
from appliance.trust import trust_layout as layout
from appliance.trust.sshsig import load_allowed_signers
from appliance.trust.trust_update import TrustFiles, apply_update
from tests.conftest import run
from tests.integration.test_bundle_verify import ReleaseKey, make_release_key, make_tree, seal
from tests.unit.test_trust_update import BUNDLE_NS, TRUST_NS, Key, write_update


def key_of(release: ReleaseKey) -> Key:
    return Key(release.signer.key, release.signer.public)


@pytest.fixture
def old(tmp_path: Path) -> ReleaseKey:
    return make_release_key(tmp_path / "old", "release")


@pytest.fixture
def new(tmp_path: Path) -> ReleaseKey:
    return make_release_key(tmp_path / "new", "release")


@pytest.fixture
def node(tmp_path: Path, old: ReleaseKey) -> TrustFiles:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "bundle_signers").write_text(key_of(old).line("release", BUNDLE_NS, TRUST_NS))
    return TrustFiles(layout.ROLE_BUNDLE, etc / "bundle_signers")


def bundle_signed_by(folder: Path, key: ReleaseKey) -> Path:
    return seal(make_tree(folder), key)


def rotate(tmp_path: Path, node: TrustFiles, old: ReleaseKey, new: ReleaseKey, **kw: str) -> None:
    window = kw.get("old_window", "")
    signers = key_of(old).line("release", BUNDLE_NS, TRUST_NS, window=window)
    signers += key_of(new).line("release", BUNDLE_NS, TRUST_NS)
    update = write_update(tmp_path, key_of(old), signers, revoked=kw.get("revoked", ""))
    apply_update(update, node)


def stock_verdict(bundle: Path, node: TrustFiles, revoked: bool) -> int:
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(node.signers), "-I", "release"]
    argv += ["-n", BUNDLE_NS, "-s", str(bundle / "SHA256SUMS.sig")]
    argv += ["-r", str(node.revoked)] if revoked else []
    with (bundle / "SHA256SUMS").open("rb") as stdin:
        return subprocess.run(argv, stdin=stdin, capture_output=True, check=False).returncode


def test_a_bundle_by_the_new_key_verifies_after_the_rotation(
    tmp_path: Path, node: TrustFiles, old: ReleaseKey, new: ReleaseKey
) -> None:
    bundle = bundle_signed_by(tmp_path / "b", new)
    with pytest.raises(BundleRejected, match="is not an allowed signer"):
        verify_bundle(bundle, load_allowed_signers(node.signers))
    rotate(tmp_path, node, old, new)
    report = verify_bundle(bundle, load_allowed_signers(node.signers))
    assert report.fingerprint == new.signer.public.fingerprint
    assert stock_verdict(bundle, node, revoked=True) == 0


def test_the_retired_key_is_refused_after_its_valid_before(
    tmp_path: Path, node: TrustFiles, old: ReleaseKey, new: ReleaseKey
) -> None:
    bundle = bundle_signed_by(tmp_path / "b", old)
    rotate(tmp_path, node, old, new, old_window='valid-before="20261130Z"')
    result = run("appliance", "verify", bundle, "--signers", node.signers)
    assert result.returncode == 3
    [error] = result.stderr.strip().splitlines()[-1:]
    assert "expired at 2026-11-30T00:00:00Z (valid-before" in error, result.stderr
    assert stock_verdict(bundle, node, revoked=False) != 0


def test_a_bundle_by_a_revoked_key_is_refused_by_verify_and_by_ssh_keygen_r(
    tmp_path: Path, node: TrustFiles, old: ReleaseKey, new: ReleaseKey
) -> None:
    bundle = bundle_signed_by(tmp_path / "b", old)
    rotate(tmp_path, node, old, new, revoked=old.signer.public.openssh_line() + "\n")
    result = run("appliance", "verify", bundle, "--signers", node.signers)
    assert result.returncode == 3
    [error] = result.stderr.strip().splitlines()
    assert (
        "is revoked (listed in the revocation list" in error and "bundle_signers.revoked" in error
    )
    assert stock_verdict(bundle, node, revoked=False) == 0  # the line still names it
    assert stock_verdict(bundle, node, revoked=True) != 0
