"""Debian's metadata read strictly (appliance/bundles/debian_archive.py), and the chain
InRelease -> Packages.xz -> .deb walked over a bundle's debs/ folder with the real gpgv.

The repositories here are signed by a test key (tests/debian_repo.py), so each hostile input
can carry a good signature where it needs one; tests/integration/test_debian_packages.py does
the same against Debian's own metadata and keyring.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.bundles import bundle_layout as layout
from appliance.bundles.debian_archive import (
    Deb822Error,
    binary_package,
    cleartext_body,
    decompress_xz,
    find_packages,
    parse_deb822,
    parse_release,
    provenance_problem,
    verify_debian_packages,
    verify_inrelease,
)
from appliance.errors import BundleRejected, SignatureError
from tests.debian_repo import TARGET, ArchiveKey, Deb, SignedRepo, make_key, standard_debs
from tests.packs import flip_byte

needs_gpg = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("gpg", "gpgv", "gpgconf")),
    reason="needs gpg (to make a test key) and gpgv",
)

SUITE = layout.debian_suites(TARGET)[0]  # debian bookworm
UPDATES = layout.debian_suites(TARGET)[1]


# --- deb822 -----------------------------------------------------------------------------------------


def test_paragraphs_fields_and_continuation_lines() -> None:
    text = "Package: a\nDescription: first\n second\n .\n third\n\n\nPackage: b\nSize: 3\n"
    assert parse_deb822(text) == [
        {"Package": "a", "Description": "first\nsecond\n.\nthird"},
        {"Package": "b", "Size": "3"},
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Package: a\nPackage: b\n", "appears twice"),
        (" stray\nPackage: a\n", "belongs to no field"),
        ("Package a\n", "is not a 'Field: value' line"),
        ("#comment: x\n", "is not a 'Field: value' line"),
    ],
)
def test_a_malformed_paragraph_is_refused(text: str, words: str) -> None:
    with pytest.raises(Deb822Error, match=words):
        parse_deb822(text, "Packages")


def test_a_release_names_its_codename_date_and_index_files() -> None:
    digest = "a" * 64
    release = parse_release(
        f"Codename: bookworm\nSuite: oldstable\nDate: {'Sat, 11 Jul 2026 10:16:37 UTC'}\n"
        f"MD5Sum:\n {'b' * 32} 12 main/binary-amd64/Packages\n"
        f"SHA256:\n {digest} 12 main/binary-amd64/Packages\n {digest} 34 {layout.PACKAGES_INDEX}\n"
    )
    assert (release.codename, release.suite) == ("bookworm", "oldstable")
    assert release.files[layout.PACKAGES_INDEX].size == 34


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Codename: x\nDate: y\n", "has no SHA256"),
        ("Codename: x\nDate: y\nSHA256:\n nothex 12 main/Packages\n", "is not '<sha256>"),
        ("Codename: x\n\nDate: y\n", "holds 2 paragraphs"),
    ],
)
def test_a_malformed_release_is_refused(text: str, words: str) -> None:
    with pytest.raises(Deb822Error, match=words):
        parse_release(text)


# --- cleartext signatures -------------------------------------------------------------------------


SIGNED = (
    "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nCodename: x\n- -dashed\n"
    "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
)


def test_the_signed_text_has_its_dash_escapes_removed() -> None:
    assert cleartext_body(SIGNED.encode()) == "Codename: x\n-dashed\n"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Codename: evil\n" + SIGNED.encode(), "does not start with"),
        (SIGNED.encode()[: len(SIGNED) // 2], "cut short or garbled"),
        (SIGNED.encode() + b"Codename: evil\n", "text follows the signature"),
        (SIGNED.replace("Hash: SHA256", "Comment: hi").encode(), "may only name the hash"),
        (SIGNED.replace("- -dashed", "-dashed").encode(), "unescaped dash"),
        (b"\xff\xfe" + SIGNED.encode(), "is not UTF-8"),
    ],
)
def test_a_cleartext_message_that_is_not_whole_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(Deb822Error, match=words):
        cleartext_body(data)


# --- Packages and xz ----------------------------------------------------------------------------


def test_only_the_wanted_stanzas_are_read() -> None:
    debs = standard_debs()
    text = "\n".join(deb.stanza() for deb in debs) + "\nPackage: other\nbroken line\n"
    found = find_packages(text.encode(), [debs[1].filename], "Packages")
    assert list(found) == [debs[1].filename]
    assert found[debs[1].filename].sha256 == hashlib.sha256(debs[1].data).hexdigest()


def test_a_wanted_filename_listed_twice_is_refused() -> None:
    deb = standard_debs()[0]
    text = f"{deb.stanza()}\n{deb.stanza().replace('Size: ', 'Size: 1')}"
    with pytest.raises(Deb822Error, match="twice"):
        find_packages(text.encode(), [deb.filename], "Packages")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"Filename": "pool/main/../../../etc/evil.deb"}, "climbs out with '..'"),
        ({"Filename": "/etc/evil.deb"}, "absolute path"),
        ({"Filename": "pool/main/a/a.tar"}, "is not a .deb"),
        ({"SHA256": "A" * 64}, "malformed"),
        ({"Package": "Bad Name"}, "is not a Debian package name"),
        ({"Size": ""}, "has no Size"),
    ],
)
def test_a_stanza_with_an_unsafe_or_missing_field_is_refused(
    change: dict[str, str], words: str
) -> None:
    [fields] = parse_deb822(standard_debs()[0].stanza())
    with pytest.raises(Deb822Error, match=words):
        binary_package(fields | change, "stanza")


def test_xz_cut_short_with_trailing_data_or_too_large_is_refused() -> None:
    data = lzma.compress(b"Package: a\n" * 1000)
    assert decompress_xz(data, 1 << 20, "x") == b"Package: a\n" * 1000
    with pytest.raises(Deb822Error, match="cut short"):
        decompress_xz(data[: len(data) // 2], 1 << 20, "x")
    with pytest.raises(Deb822Error, match="data follows"):
        decompress_xz(data + b"junk", 1 << 20, "x")
    with pytest.raises(Deb822Error, match="more than 100 bytes"):
        decompress_xz(data, 100, "x")
    with pytest.raises(Deb822Error, match="is not xz data"):
        decompress_xz(b"PK\x03\x04 not xz at all", 1 << 20, "x")


def test_no_gpgv_or_no_keyring_is_said_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no keyring at" in str(provenance_problem(tmp_path / "none.gpg"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "gpgv is not installed" in str(provenance_problem(tmp_path / "none.gpg"))


# --- InRelease with gpgv ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveKey]:
    if any(shutil.which(tool) is None for tool in ("gpg", "gpgv", "gpgconf")):
        pytest.skip("needs gpg (to make a test key) and gpgv")
    yield from make_key(tmp_path_factory.mktemp("archive-key"))


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveKey]:
    if shutil.which("gpg") is None:
        pytest.skip("needs gpg")
    yield from make_key(tmp_path_factory.mktemp("other-key"))


RELEASE = f"Codename: bookworm\nDate: d\nSHA256:\n {'a' * 64} 1 {layout.PACKAGES_INDEX}\n"


def test_a_good_inrelease_gives_its_signer_and_fields(key: ArchiveKey) -> None:
    release = verify_inrelease(key.clearsign(RELEASE), key.keyring)
    assert release.codename == "bookworm"
    assert len(release.signers) == 1
    assert len(release.signers[0]) == 40


def test_an_inrelease_changed_after_signing_is_a_bad_signature(key: ArchiveKey) -> None:
    signed = key.clearsign(RELEASE).replace(b"Date: d", b"Date: e")
    with pytest.raises(SignatureError, match="bad signature"):
        verify_inrelease(signed, key.keyring)


def test_an_inrelease_by_a_key_not_in_the_keyring_is_refused(
    key: ArchiveKey, other_key: ArchiveKey
) -> None:
    with pytest.raises(SignatureError, match="no good signature by a key in"):
        verify_inrelease(other_key.clearsign(RELEASE), key.keyring)


# --- a bundle's debs/ ----------------------------------------------------------------------------------


class Repo:
    """A signed debs/debian12 folder in an unpacked bundle, and its manifest entry."""

    def __init__(self, root: Path, key: ArchiveKey) -> None:
        self.root = root
        self.key = key
        self.signed = SignedRepo(root, key, standard_debs())
        self.entry = self.signed.seal()

    @property
    def folder(self) -> Path:
        return self.signed.folder

    def manifest(self) -> dict[str, Any]:
        return {"targets": [self.entry]}

    def verify(self, keyring: Path | None = None) -> Any:
        return verify_debian_packages(self.root, self.manifest(), keyring or self.key.keyring)

    def refused(self, reason: str, words: str) -> None:
        with pytest.raises(BundleRejected, match=re.escape(words)) as refused:
            self.verify()
        assert refused.value.reason == reason, refused.value

    def rehash_inrelease(self, index: int = 0) -> None:
        """Make the manifest agree with an InRelease changed in place (a forger's next step)."""
        suite = layout.debian_suites(TARGET)[index]
        data = (self.folder / suite.inrelease).read_bytes()
        self.entry["sources"][index]["inrelease_sha256"] = hashlib.sha256(data).hexdigest()


@pytest.fixture
def repo(tmp_path: Path, key: ArchiveKey) -> Repo:
    return Repo(tmp_path / layout.top_dir("1.0.0"), key)


def test_a_good_debs_folder_is_traced_to_its_signatures(repo: Repo) -> None:
    report = repo.verify()
    [target] = report.targets
    assert target.name == "debian12"
    assert target.debs == 3
    assert target.bytes == repo.entry["bytes"]
    assert [s.suite for s in target.sources] == [s.suite for s in layout.debian_suites(TARGET)]
    assert json.loads(json.dumps(report.as_json()))["debs"] == 3


def test_a_bundle_without_debs_or_targets_has_nothing_to_check(tmp_path: Path) -> None:
    root = tmp_path / layout.top_dir("1.0.0")
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    report = verify_debian_packages(root, {}, Path(layout.DEBIAN_KEYRING))
    assert report.targets == ()


def test_an_inrelease_changed_after_signing_is_refused(repo: Repo) -> None:
    path = repo.folder / SUITE.inrelease
    path.write_bytes(path.read_bytes().replace(b"Origin: Test", b"Origin: Tesu"))
    repo.refused("bad-manifest", "differs from its inrelease_sha256")
    repo.rehash_inrelease()
    repo.refused("debian-signature", "bad signature")


def test_a_byte_flipped_in_inreleases_signature_is_refused(repo: Repo) -> None:
    path = repo.folder / SUITE.inrelease
    data = path.read_bytes()
    begin = data.index(b"-----BEGIN PGP SIGNATURE-----")
    end = data.index(b"-----END PGP SIGNATURE-----")
    flip_byte(path, (begin + end) // 2)  # inside the signature packet (not its armor checksum)
    repo.rehash_inrelease()
    repo.refused("debian-signature", f"{SUITE.inrelease}")


@pytest.mark.parametrize(
    "garble",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[: data.index(b"-----BEGIN PGP SIGNATURE-----")],
        lambda data: bytes(reversed(data)),
        lambda _data: b"",
    ],
    ids=["truncated", "no-signature", "garbled", "empty"],
)
def test_a_truncated_or_garbled_inrelease_is_refused(
    repo: Repo, garble: Callable[[bytes], bytes]
) -> None:
    path = repo.folder / SUITE.inrelease
    path.write_bytes(garble(path.read_bytes()))
    repo.rehash_inrelease()
    repo.refused("debian-signature", SUITE.inrelease)


def test_text_before_the_signed_message_is_refused(repo: Repo) -> None:
    path = repo.folder / SUITE.inrelease
    path.write_bytes(b"Codename: bookworm\n" + path.read_bytes())
    repo.rehash_inrelease()
    repo.refused("debian-signature", "does not start with")


def test_a_keyring_without_the_signing_key_is_refused(repo: Repo) -> None:
    with pytest.raises(BundleRejected, match="no good signature") as refused:
        repo.verify(Path(layout.DEBIAN_KEYRING))
    assert refused.value.reason == "debian-signature"


def test_the_inrelease_of_another_suite_is_refused(repo: Repo) -> None:
    shutil.copyfile(repo.folder / UPDATES.inrelease, repo.folder / SUITE.inrelease)
    repo.rehash_inrelease()
    repo.refused("debian-metadata", "is the InRelease of 'bookworm-updates', not of bookworm")


def test_a_manifest_date_that_is_not_inreleases_is_refused(repo: Repo) -> None:
    repo.entry["sources"][0]["date"] = "Mon, 1 Jan 2024 00:00:00 UTC"
    repo.refused("bad-manifest", "is dated")


def test_packages_xz_that_inrelease_does_not_list_is_refused(repo: Repo) -> None:
    flip_byte(repo.folder / SUITE.packages_index, 40)
    repo.refused("debian-metadata", "is not the file its InRelease lists")


def test_packages_xz_cut_short_is_refused_even_when_signed(repo: Repo) -> None:
    whole = (repo.folder / SUITE.packages_index).read_bytes()
    repo.signed.packages_override[SUITE.suite] = whole[: len(whole) - 20]
    repo.entry = repo.signed.seal()
    repo.refused("debian-metadata", "cut short")


def test_a_changed_deb_is_refused(repo: Repo) -> None:
    deb = standard_debs()[1]
    flip_byte(repo.folder / deb.archive / deb.filename, 100)
    repo.refused("debian-package", "is not the .deb Debian's Packages lists")


def test_an_extra_deb_is_refused(repo: Repo) -> None:
    deb = standard_debs()[1]
    extra = repo.folder / deb.archive / "pool/main/e/evil/evil_1.0_amd64.deb"
    extra.parent.mkdir(parents=True)
    shutil.copyfile(repo.folder / deb.archive / deb.filename, extra)
    repo.refused("unlisted-file", "evil_1.0_amd64.deb")


def test_a_deb_of_a_target_the_manifest_does_not_name_is_refused(repo: Repo) -> None:
    extra = repo.root / "debs/debian13/debian/pool/main/a/a_1_amd64.deb"
    extra.parent.mkdir(parents=True)
    extra.write_bytes(b"x")
    repo.refused("unlisted-file", "debs/debian13/")


def test_a_missing_deb_is_refused(repo: Repo) -> None:
    deb = standard_debs()[0]
    (repo.folder / deb.archive / deb.filename).unlink()
    repo.refused("missing-file", deb.filename)


def test_a_deb_in_no_packages_file_is_refused(repo: Repo) -> None:
    repo.signed.debs.append(Deb("ghost", "1.0", "pool/main/g/ghost/ghost_1.0_amd64.deb", b"g"))
    entry = repo.signed.seal()
    ghost = entry["closure"]["podman"][-1]
    # Sealed again with the ghost out of Packages but still in the manifest and the folder.
    repo.signed.debs.pop()
    repo.entry = repo.signed.seal()
    repo.entry["closure"]["podman"].append(ghost)
    repo.entry["bytes"] += ghost["size"]
    repo.refused("debian-package", "is in no Packages of its target's suites")


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("version", "9.9", "disagrees with Debian's Packages stanza"),
        ("sha256", "0" * 64, "disagrees with Debian's Packages stanza"),
        ("size", 1, "disagrees with Debian's Packages stanza"),
        ("file", "debian/pool/main/../../../../etc/passwd.deb", "climbs out with '..'"),
        ("file", "/etc/passwd.deb", "absolute path"),
        ("file", "elsewhere/pool/a.deb", "is not a .deb below one of"),
        ("sha256", "not hex", "malformed"),
    ],
)
def test_a_closure_entry_that_disagrees_or_escapes_is_refused(
    repo: Repo, field: str, value: object, words: str
) -> None:
    repo.entry["closure"]["podman"][0][field] = value
    repo.refused("bad-manifest", words)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": "debian11"}, "is no node target"),
        ({"codename": "trixie"}, "codename, os_version_id, python and debs_dir must be"),
        ({"debs_dir": "debs/../etc"}, "codename, os_version_id, python and debs_dir must be"),
        ({"requires": {"base": ["python3-venv"], "podman": ["podman", "runc"]}}, "lacks what"),
        ({"requires": {"base": ["python3-venv"]}}, "requires must name base"),
        ({"closure": {"lxc": []}, "requires": {"base": [], "lxc": []}}, "not an engine"),
        ({"bytes": 1}, "the sum of its .debs"),
        ({"sources": []}, "must list the 3 suites"),
    ],
)
def test_a_target_entry_that_is_wrong_is_refused(
    repo: Repo, change: dict[str, Any], words: str
) -> None:
    repo.entry |= change
    repo.refused("bad-manifest", words)


def test_sources_in_another_order_are_refused(repo: Repo) -> None:
    repo.entry["sources"].reverse()
    repo.refused("bad-manifest", "sources[0] must be debian bookworm main")


def test_a_target_named_twice_is_refused(repo: Repo) -> None:
    with pytest.raises(BundleRejected, match="names debian12 twice"):
        verify_debian_packages(repo.root, {"targets": [repo.entry, repo.entry]}, repo.key.keyring)


def test_each_engines_entry_for_a_shared_deb_must_agree(repo: Repo) -> None:
    """Engines share .debs: the second engine's entry for one is checked as the first's is."""
    shared = [dict(item) for item in repo.entry["closure"]["podman"]]
    repo.entry["closure"]["docker"] = shared
    repo.entry["requires"]["docker"] = ["podman"]
    assert len(repo.verify().targets[0].sources) == 3
    shared[1]["version"] = "0.0.1"
    repo.refused("bad-manifest", "disagrees with Debian's Packages stanza")
