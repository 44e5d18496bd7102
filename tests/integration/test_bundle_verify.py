"""Bundle verification (appliance/bundles/bundle_verify.py) against a small fake bundle, and stock tools.

Every verdict of `verify_bundle` is checked against what an operator on a stock node gets from
`tar`, `sha256sum -c` and `ssh-keygen -Y verify`, so the two never drift apart.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.bundles.bundle_verify import verify_bundle
from appliance.errors import BundleRejected
from appliance.trust.sshsig import AllowedSigner, load_allowed_signers
from bundle import layout
from bundle.archive import write_archive
from bundle.checksums import parse_checksums, write_checksums
from bundle.sign import sign_checksums
from tests.conftest import Signer, make_signer, run

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("tar", "sha256sum", "ssh-keygen")),
    reason="needs GNU tar, coreutils sha256sum and OpenSSH ssh-keygen",
)

VERSION = "1.4.0"
EPOCH = 1_780_000_000
IMAGE = f"{layout.IMAGES_DIR}/server.tar"
GUIDE = f"{layout.DOCS_DIR}/quick-guide.md"


@dataclass(frozen=True)
class ReleaseKey:
    """A signing key and an allowed_signers file trusting it for bundles."""

    signer: Signer
    allowed_signers: Path

    @property
    def principal(self) -> str:
        return self.signer.principal

    def trusted(self) -> list[AllowedSigner]:
        return load_allowed_signers(self.allowed_signers)


def make_release_key(folder: Path, principal: str) -> ReleaseKey:
    # conftest's make_signer trusts its key for result packs only; bundles need their namespace.
    signer = make_signer(folder, principal)
    allowed = folder / "allowed_signers.bundle"
    line = f'{principal} namespaces="{layout.SIGNATURE_NAMESPACE}" {signer.public.openssh_line()}'
    allowed.write_text(f"{line}\n")
    return ReleaseKey(signer, allowed)


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> ReleaseKey:
    return make_release_key(tmp_path_factory.mktemp("release"), "release@build")


@pytest.fixture(scope="module")
def untrusted_key(tmp_path_factory: pytest.TempPathFactory) -> ReleaseKey:
    return make_release_key(tmp_path_factory.mktemp("intruder"), "intruder@elsewhere")


def make_tree(parent: Path, manifest_overrides: dict[str, object] | None = None) -> Path:
    """An unsealed bundle folder: a few small files and a manifest listing the image."""
    root = parent / layout.top_dir(VERSION)
    files = {
        layout.INSTALL_SCRIPT: b"#!/bin/sh\nset -eu\necho installing\n",
        f"{layout.WHEELS_DIR}/appliance-{VERSION}-py3-none-any.whl": b"PK\x03\x04 not a real wheel",
        IMAGE: random.Random(7).randbytes(200_000),
        f"{layout.ANSIBLE_DIR}/site.yml": b"- hosts: localhost\n  roles: [server]\n",
        f"{layout.SBOM_DIR}/wheels.cdx.json": b'{"bomFormat": "CycloneDX"}\n',
        GUIDE: b"# Quick guide\n\nRun install.sh.\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / layout.INSTALL_SCRIPT).chmod(0o755)
    image = files[IMAGE]
    manifest: dict[str, object] = {
        "format": layout.MANIFEST_FORMAT,
        "format_version": layout.MANIFEST_VERSION,
        "version": VERSION,
        "min_upgrade_from": "1.2.0",
        "build": {"source_revision": "0" * 40, "source_date_epoch": EPOCH},
        "images": [
            {"file": IMAGE, "sha256": hashlib.sha256(image).hexdigest(), "size": len(image)}
        ],
    } | (manifest_overrides or {})
    (root / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def seal(root: Path, key: ReleaseKey) -> Path:
    """Write SHA256SUMS and its signature, as the build does."""
    checksums = write_checksums(root)
    (root / layout.CHECKSUMS).write_bytes(checksums)
    (root / layout.CHECKSUMS_SIG).write_bytes(sign_checksums(checksums, key.signer.key))
    return root


def archive(root: Path) -> Path:
    out = root.parent / layout.archive_name(VERSION)
    write_archive(root, out, EPOCH)
    return out


def reason_of(path: Path, key: ReleaseKey) -> str:
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(path, key.trusted())
    assert "\n" not in str(caught.value)
    return caught.value.reason


def extract(tar: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    dest.mkdir()
    return subprocess.run(["tar", "-xf", tar, "-C", dest], capture_output=True, text=True)


def stock_sha256sum(top: Path) -> int:
    command = ["sha256sum", "-c", "--quiet", layout.CHECKSUMS]
    return subprocess.run(command, cwd=top, capture_output=True).returncode


def stock_signature(top: Path, key: ReleaseKey) -> int:
    command: list[str | Path] = [
        "ssh-keygen",
        "-Y",
        "verify",
        "-f",
        key.allowed_signers,
        "-I",
        key.principal,
        "-n",
        layout.SIGNATURE_NAMESPACE,
        "-s",
        top / layout.CHECKSUMS_SIG,
    ]
    with (top / layout.CHECKSUMS).open("rb") as message:
        return subprocess.run(command, stdin=message, capture_output=True).returncode


def unpack(tar: Path, dest: Path) -> Path:
    """Extract with stock tar, as an operator would; return the top folder."""
    assert extract(tar, dest).returncode == 0
    return dest / layout.top_dir(VERSION)


@pytest.fixture
def good_tree(tmp_path: Path, release_key: ReleaseKey) -> Path:
    return seal(make_tree(tmp_path / "build"), release_key)


@pytest.fixture
def good_bundle(good_tree: Path) -> Path:
    return archive(good_tree)


# Fixtures for bad bundles, named for what is wrong with them; each returns the .tar.


@pytest.fixture
def bundle_with_flipped_byte_in_image(good_tree: Path) -> Path:
    image = good_tree / IMAGE
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    return archive(good_tree)


@pytest.fixture
def bundle_with_extra_file(good_tree: Path) -> Path:
    (good_tree / layout.DOCS_DIR / "not-in-sums.md").write_text("slipped in after signing\n")
    return archive(good_tree)


@pytest.fixture
def bundle_with_removed_file(good_tree: Path) -> Path:
    (good_tree / GUIDE).unlink()
    return archive(good_tree)


@pytest.fixture
def bundle_with_edited_checksums(good_tree: Path) -> Path:
    # The attack the signature stops: swap the image and recompute SHA256SUMS to match it.
    (good_tree / IMAGE).write_bytes(b"an image with a back door\n")
    (good_tree / layout.CHECKSUMS).write_bytes(write_checksums(good_tree))
    return archive(good_tree)


@pytest.fixture
def bundle_signed_by_untrusted_key(good_tree: Path, untrusted_key: ReleaseKey) -> Path:
    return archive(seal(good_tree, untrusted_key))


@pytest.fixture
def truncated_bundle(good_bundle: Path) -> Path:
    data = good_bundle.read_bytes()
    good_bundle.write_bytes(data[: len(data) // 2])
    return good_bundle


@pytest.fixture
def bundle_with_symlink(good_tree: Path) -> Path:
    # A listed file replaced by a link to another file of the bundle; write_archive refuses
    # links, so stock tar builds this one.
    (good_tree / GUIDE).unlink()
    (good_tree / GUIDE).symlink_to(f"../{layout.INSTALL_SCRIPT}")
    out = good_tree.parent / layout.archive_name(VERSION)
    subprocess.run(["tar", "-cf", out, "-C", good_tree.parent, good_tree.name], check=True)
    return out


@pytest.fixture
def bundle_with_bad_manifest(tmp_path: Path, release_key: ReleaseKey) -> Path:
    # Correctly listed and signed: only the manifest's content is wrong.
    tree = make_tree(tmp_path / "build", {"format_version": 2})
    return archive(seal(tree, release_key))


def test_good_bundle_verifies(good_bundle: Path, release_key: ReleaseKey) -> None:
    report = verify_bundle(good_bundle, release_key.trusted())
    assert report.version == VERSION
    assert report.principal == "release@build"
    assert report.fingerprint == release_key.signer.public.fingerprint
    assert report.files == 7
    assert report.bytes == sum(
        (good_bundle.parent / layout.top_dir(VERSION) / name).stat().st_size
        for name in parse_checksums(
            (good_bundle.parent / layout.top_dir(VERSION) / "SHA256SUMS").read_bytes()
        )
    )
    assert report.manifest["images"][0]["file"] == IMAGE
    assert json.loads(json.dumps(report.as_json()))["fingerprint"] == report.fingerprint


def test_unpacked_good_bundle_verifies(
    good_bundle: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    top = unpack(good_bundle, tmp_path / "unpacked")
    for path in (top, top.parent):
        assert verify_bundle(path, release_key.trusted()).principal == release_key.principal


def test_stock_tools_accept_good_bundle(
    good_bundle: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    top = unpack(good_bundle, tmp_path / "unpacked")
    assert stock_sha256sum(top) == 0
    assert stock_signature(top, release_key) == 0
    assert os.access(top / layout.INSTALL_SCRIPT, os.X_OK)


def test_bundle_tarred_by_stock_tar_verifies(good_tree: Path, release_key: ReleaseKey) -> None:
    # Member order differs from write_archive's: files may come before SHA256SUMS.
    out = good_tree.parent / "stock.tar"
    subprocess.run(["tar", "-cf", out, "-C", good_tree.parent, good_tree.name], check=True)
    assert verify_bundle(out, release_key.trusted()).version == VERSION


def test_key_trusted_for_result_packs_only_is_refused(
    good_bundle: Path, release_key: ReleaseKey
) -> None:
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(good_bundle, release_key.signer.trusted())
    assert caught.value.reason == "signature"
    assert "namespace" in str(caught.value)


def test_flipped_byte_in_image_is_refused(
    bundle_with_flipped_byte_in_image: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_with_flipped_byte_in_image, release_key) == "checksum-mismatch"
    top = unpack(bundle_with_flipped_byte_in_image, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "checksum-mismatch"
    assert stock_sha256sum(top) != 0
    assert stock_signature(top, release_key) == 0


def test_extra_file_is_refused(
    bundle_with_extra_file: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_with_extra_file, release_key) == "unlisted-file"
    top = unpack(bundle_with_extra_file, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "unlisted-file"
    # Stock sha256sum -c only checks the files SHA256SUMS lists, so it does not notice an
    # unlisted one; that is why `appliance verify` exists. Comparing the listed and the present
    # files (what `comm -13` of the two sorted lists shows) finds it.
    assert stock_sha256sum(top) == 0
    assert stock_signature(top, release_key) == 0
    listed = set(parse_checksums((top / layout.CHECKSUMS).read_bytes())) | set(
        layout.UNLISTED_FILES
    )
    present = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()}
    assert sorted(present - listed) == [f"{layout.DOCS_DIR}/not-in-sums.md"]


def test_removed_file_is_refused(
    bundle_with_removed_file: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_with_removed_file, release_key) == "missing-file"
    top = unpack(bundle_with_removed_file, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "missing-file"
    assert stock_sha256sum(top) != 0


def test_edited_checksums_are_refused(
    bundle_with_edited_checksums: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_with_edited_checksums, release_key) == "signature"
    top = unpack(bundle_with_edited_checksums, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "signature"
    assert stock_sha256sum(top) == 0  # the checksums match the swapped files...
    assert stock_signature(top, release_key) != 0  # ...but no longer their signature


def test_bundle_signed_by_untrusted_key_is_refused(
    bundle_signed_by_untrusted_key: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_signed_by_untrusted_key, release_key) == "signature"
    top = unpack(bundle_signed_by_untrusted_key, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "signature"
    assert stock_signature(top, release_key) != 0


def test_truncated_bundle_is_refused(
    truncated_bundle: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(truncated_bundle, release_key) == "truncated"
    listing = subprocess.run(["tar", "-tf", truncated_bundle], capture_output=True)
    unpacked = extract(truncated_bundle, tmp_path / "unpacked")
    top = tmp_path / "unpacked" / layout.top_dir(VERSION)
    assert listing.returncode != 0 or unpacked.returncode != 0 or stock_sha256sum(top) != 0


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.6, 0.9, 0.99])
def test_bundle_cut_anywhere_is_refused(
    good_bundle: Path, release_key: ReleaseKey, cut: float
) -> None:
    data = good_bundle.read_bytes()
    good_bundle.write_bytes(data[: int(len(data) * cut)])
    assert reason_of(good_bundle, release_key) in {"truncated", "not-a-bundle"}


def test_bundle_with_symlink_is_refused(
    bundle_with_symlink: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    assert reason_of(bundle_with_symlink, release_key) == "unsafe-member"
    top = unpack(bundle_with_symlink, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "unsafe-member"
    assert stock_sha256sum(top) != 0  # sha256sum follows the link to a file of other content


def test_bundle_with_bad_manifest_is_refused(
    bundle_with_bad_manifest: Path, tmp_path: Path, release_key: ReleaseKey
) -> None:
    with pytest.raises(BundleRejected, match="format_version") as caught:
        verify_bundle(bundle_with_bad_manifest, release_key.trusted())
    assert caught.value.reason == "bad-manifest"
    top = unpack(bundle_with_bad_manifest, tmp_path / "unpacked")
    assert reason_of(top, release_key) == "bad-manifest"
    # Stock tools cannot judge the manifest's content: the files and signature are all good.
    assert stock_sha256sum(top) == 0
    assert stock_signature(top, release_key) == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": "1.3.9"}, "differs from the folder"),
        ({"format": "something-else"}, "format must be"),
        ({"images": [{"file": "images/other.tar", "sha256": "0" * 64, "size": 1}]}, "not listed"),
        ({"images": [{"file": IMAGE, "sha256": "0" * 64, "size": 200_000}]}, "differs from"),
        ({"images": [{"file": IMAGE}]}, "must be an object with"),
        ({"min_upgrade_from": None}, "min_upgrade_from"),
    ],
)
def test_manifest_checks(
    tmp_path: Path, release_key: ReleaseKey, overrides: dict[str, object], message: str
) -> None:
    tree = seal(make_tree(tmp_path, overrides), release_key)
    with pytest.raises(BundleRejected, match=message) as caught:
        verify_bundle(tree, release_key.trusted())
    assert caught.value.reason == "bad-manifest"


def test_unsafe_tar_members_are_refused(good_bundle: Path, release_key: ReleaseKey) -> None:
    top = layout.top_dir(VERSION)
    for name in (f"{top}/../escape", f"{top}/{layout.DOCS_DIR}/x.md", "elsewhere/file"):
        bad = good_bundle.with_name(f"bad-{abs(hash(name))}.tar")
        shutil.copy(good_bundle, bad)
        with tarfile.open(bad, "a", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
            if name.endswith("x.md"):
                tar.addfile(info, io.BytesIO(b"x"))
        assert reason_of(bad, release_key) == "unsafe-member", name


def test_archive_is_reproducible(tmp_path: Path, release_key: ReleaseKey) -> None:
    first = archive(seal(make_tree(tmp_path / "one"), release_key))
    second_tree = make_tree(tmp_path / "two")
    # Different timestamps and permissions on disk must not reach the archive.
    for path in second_tree.rglob("*"):
        os.utime(path, (EPOCH + 12345, EPOCH + 12345))
        if path.is_file() and not os.access(path, os.X_OK):
            path.chmod(0o600)
    second = archive(seal(second_tree, release_key))
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    top = layout.top_dir(VERSION)
    assert [m.name for m in members[:3]] == [
        top,
        f"{top}/{layout.CHECKSUMS}",
        f"{top}/{layout.CHECKSUMS_SIG}",
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(EPOCH, 0, 0, "", "")}
    modes = {m.name.removeprefix(f"{top}/"): m.mode for m in members}
    assert modes[layout.INSTALL_SCRIPT] == 0o755
    assert modes[layout.IMAGES_DIR] == 0o755
    assert modes[IMAGE] == 0o644


def test_the_cli_verifies_a_good_bundle_and_names_the_signer(
    good_bundle: Path, release_key: ReleaseKey
) -> None:
    done = run(
        "appliance", "verify", good_bundle, "--signers", release_key.allowed_signers, check=True
    )
    assert "OK, appliance" in done.stdout
    assert (
        f"signed by  {release_key.principal} ({release_key.signer.public.fingerprint})"
        in done.stdout
    )
    report = json.loads(
        run(
            "appliance",
            "verify",
            good_bundle,
            "--signers",
            release_key.allowed_signers,
            "--json",
            check=True,
        ).stdout
    )
    assert report["principal"] == release_key.principal


def test_the_cli_refuses_a_tampered_bundle_in_one_line(
    bundle_with_flipped_byte_in_image: Path, release_key: ReleaseKey
) -> None:
    done = run(
        "appliance",
        "verify",
        bundle_with_flipped_byte_in_image,
        "--signers",
        release_key.allowed_signers,
    )
    assert done.returncode == 3
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("loose", [True, 1.0], ids=["bool", "float"])
def test_a_format_version_that_only_equals_1_is_refused(
    tmp_path: Path, release_key: ReleaseKey, loose: object
) -> None:
    bundle = archive(seal(make_tree(tmp_path / "build", {"format_version": loose}), release_key))
    with pytest.raises(BundleRejected, match="format_version") as caught:
        verify_bundle(bundle, release_key.trusted())
    assert caught.value.reason == "bad-manifest"
