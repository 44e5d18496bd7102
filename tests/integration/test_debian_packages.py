"""The debs step (bundle/debs.py) against Debian itself: real metadata, real keyring, real gpgv.

Debian's metadata and .debs are fetched once into the normal build cache (the one `make bundle`
fills), so this costs the network once; with a filled cache nothing here needs it. Each check
an auditor or the node makes is run: stock gpgv, sha256sum and xz; the node's apt reading
debs/<target>/ as a `file:` source; and verify_debian_packages on hostile copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from appliance.bundles import bundle_layout as layout
from appliance.bundles.debian_archive import verify_debian_packages
from appliance.errors import BundleRejected, ConfigError
from bundle import debs, sbom
from tests.debian_repo import tree_digest
from tests.sbom_schema import graph_errors, schema_errors

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance-bundle"
KEYRING = Path(layout.DEBIAN_KEYRING)
UNREACHABLE = "http://mirror.invalid"  # .invalid never resolves (RFC 2606)
ENGINES = tuple(layout.ENGINE_PACKAGES)

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("apt-get", "gpgv", "xz", "sha256sum"))
    or not KEYRING.is_file(),
    reason="needs apt-get, gpgv, xz, sha256sum and Debian's keyring (debian-archive-keyring)",
)


def deb_debian_org_answers() -> bool:
    try:
        with socket.create_connection(("deb.debian.org", 80), timeout=5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Collected:
    """The debs step's output: a bundle folder holding debs/, and what the step said about it."""

    root: Path
    found: list[debs.TargetDebs]
    progress: list[str]

    def manifest(self, *names: str) -> dict[str, Any]:
        return {
            "targets": [
                f.manifest_entry() for f in self.found if not names or f.target.name in names
            ]
        }

    def of(self, name: str) -> debs.TargetDebs:
        return next(f for f in self.found if f.target.name == name)


def collect(root: Path, options: debs.DebianOptions) -> Collected:
    said: list[str] = []
    found = debs.collect(layout.NODE_TARGETS, ENGINES, options, root, said.append)
    return Collected(root, found, said)


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    """Both targets, both engines, from the build cache (filled from deb.debian.org at first)."""
    options = debs.DebianOptions(CACHE)
    try:
        debs.check_can_build(layout.NODE_TARGETS, options)
        return collect(tmp_path_factory.mktemp("debs") / layout.top_dir("1.0.0"), options)
    except ConfigError as exc:
        if not deb_debian_org_answers():
            pytest.skip(f"deb.debian.org is unreachable and the build cache is not filled: {exc}")
        raise


# --- what the step lays out ---------------------------------------------------------------------


def test_each_target_carries_its_three_suites_and_each_engines_closure(
    collected: Collected,
) -> None:
    for target in layout.NODE_TARGETS:
        found = collected.of(target.name)
        folder = collected.root / layout.debs_dir(target)
        for suite in layout.debian_suites(target):
            assert (folder / suite.inrelease).is_file()
            assert (folder / suite.packages_index).is_file()
        assert list(found.closure) == list(ENGINES)
        venv = f"python{target.python}-venv"
        for engine, closure in found.closure.items():
            names = {deb.name for deb in closure}
            assert {"python3-venv", venv, *layout.ENGINE_PACKAGES[engine]} <= names
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.deb"))
        assert files == [deb.file for deb in found.debs]  # the union, each once
        assert found.bytes == sum((folder / f).stat().st_size for f in files)


def test_nothing_in_a_closure_is_already_in_the_standard_installation(
    collected: Collected,
) -> None:
    for found in collected.found:
        status = debs.standard_status(found.target, debs.DebianOptions(CACHE), print)
        installed = {
            (fields.split("\n")[0], version)
            for fields, version in _installed(status.read_text(encoding="utf-8"))
        }
        for deb in found.debs:
            assert (deb.name, deb.version) not in installed


def _installed(status: str) -> list[tuple[str, str]]:
    pairs = []
    for paragraph in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in paragraph.splitlines()
            if ": " in line and line[0] != " "
        )
        if "install ok installed" in fields.get("Status", ""):
            pairs.append((fields["Package"], fields.get("Version", "")))
    return pairs


def test_the_manifest_entry_follows_the_contract(collected: Collected) -> None:
    entry = collected.of("debian13").manifest_entry()
    assert set(entry) == set(layout.TARGET_ENTRY_FIELDS)
    assert (entry["name"], entry["codename"], entry["os_version_id"], entry["python"]) == (
        "debian13",
        "trixie",
        "13",
        "3.13",
    )
    assert entry["debs_dir"] == "debs/debian13"
    assert [(s["archive"], s["suite"], s["component"]) for s in entry["sources"]] == [
        ("debian", "trixie", "main"),
        ("debian", "trixie-updates", "main"),
        ("debian-security", "trixie-security", "main"),
    ]
    assert entry["requires"]["base"] == ["python3-venv"]
    assert entry["requires"]["podman"] == ["podman", "runc"]
    assert entry["requires"]["docker"][0] == "docker.io"  # docker-cli too from trixie on
    for closure in entry["closure"].values():
        for item in closure:
            assert set(item) == set(layout.CLOSURE_ENTRY_FIELDS)
            assert (collected.root / entry["debs_dir"] / item["file"]).is_file()
    json.dumps(entry)  # plain JSON


def test_the_node_side_verifier_traces_every_deb(collected: Collected) -> None:
    report = verify_debian_packages(collected.root, collected.manifest(), KEYRING)
    assert [t.name for t in report.targets] == ["debian12", "debian13"]
    assert report.debs == sum(len(f.debs) for f in collected.found)
    for target in report.targets:
        assert all(source.signers for source in target.sources)


# --- what an auditor runs, with stock tools only ------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "auditor-guide.md"


def auditor_script(folder: Path) -> Path:
    """docs/auditor-guide.md's check-debs.sh, word for word, saved in `folder`."""
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("```sh\n#!/bin/sh\n# check-debs.sh") + len("```sh\n")
    script = folder / "check-debs.sh"
    script.write_text(text[start : text.index("```", start)], encoding="utf-8")
    return script


def run_auditor_script(script: Path, debs_folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), str(debs_folder), str(KEYRING)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_an_auditor_traces_every_deb_with_gpgv_sha256sum_and_xz(
    collected: Collected, tmp_path: Path
) -> None:
    """The guide's script, as written there, on each target's folder."""
    script = auditor_script(tmp_path)
    for found in collected.found:
        result = run_auditor_script(script, collected.root / layout.debs_dir(found.target))
        assert result.returncode == 0, result.stderr
        checked = [line for line in result.stdout.splitlines() if line.endswith(": OK")]
        assert len(checked) == len(found.debs) + len(found.sources)


# --- what the node's apt does with it ------------------------------------------------------------


def test_the_nodes_apt_takes_each_debs_folder_as_a_signed_file_source(
    collected: Collected, tmp_path: Path
) -> None:
    """apt verifies InRelease itself (signed-by) and finds every package it needs inside."""
    for found in collected.found:
        target = found.target
        status = debs.standard_status(target, debs.DebianOptions(CACHE), print)
        tree = collected.root / layout.debs_dir(target)
        apt = debs.PrivateApt(
            tmp_path / target.name, tree, layout.debian_suites(target), status, KEYRING
        )
        for engine, closure in found.closure.items():
            requires = found.requires()
            wanted = apt.print_uris((*requires["base"], *requires[engine]))
            assert sorted(f"{archive}/{name}" for archive, name, _ in wanted) == sorted(
                deb.file for deb in closure
            )


def test_the_nodes_apt_refuses_a_changed_inrelease(collected: Collected, tmp_path: Path) -> None:
    target = layout.node_target("debian12")
    tree = tmp_path / "tree"
    for suite in layout.debian_suites(target):
        for name in (suite.inrelease, suite.packages_index):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(collected.root / layout.debs_dir(target) / name, tree / name)
    inrelease = tree / layout.debian_suites(target)[0].inrelease
    inrelease.write_bytes(inrelease.read_bytes().replace(b"Label: Debian", b"Label: Debiam"))
    status = debs.standard_status(target, debs.DebianOptions(CACHE), print)
    apt = debs.PrivateApt(tmp_path / "apt", tree, layout.debian_suites(target), status, KEYRING)
    with pytest.raises(ConfigError, match="apt-get update failed"):
        apt.update()


# --- offline, reproducible, refreshable --------------------------------------------------------------


def test_a_filled_cache_builds_offline_and_byte_identical(
    collected: Collected, tmp_path: Path
) -> None:
    """The mirror cannot even resolve: no request is made, and the same files come out."""
    again = collect(tmp_path / layout.top_dir("1.0.0"), debs.DebianOptions(CACHE, UNREACHABLE))
    assert tree_digest(again.root) == tree_digest(collected.root)
    assert again.manifest() == collected.manifest()
    assert not any("fetching" in line for line in again.progress)


def test_refresh_fetches_again_and_a_failed_refresh_keeps_the_cache(
    collected: Collected, tmp_path: Path
) -> None:
    refresh = debs.DebianOptions(CACHE, UNREACHABLE, refresh=True)
    with pytest.raises(ConfigError, match=r"cannot fetch http://mirror\.invalid/debian/dists/"):
        collect(tmp_path / "refreshed", refresh)
    again = collect(tmp_path / layout.top_dir("1.0.0"), debs.DebianOptions(CACHE, UNREACHABLE))
    assert again.manifest() == collected.manifest()


def test_a_deb_missing_from_the_cache_needs_the_mirror(
    collected: Collected, tmp_path: Path
) -> None:
    """A private cache holding only the metadata: the .debs must be fetched, and cannot be."""
    private = tmp_path / "cache"
    shutil.copytree(CACHE / debs.CACHE_FOLDER / "archive", private / debs.CACHE_FOLDER / "archive")
    shutil.copytree(
        CACHE / debs.CACHE_FOLDER / "standard", private / debs.CACHE_FOLDER / "standard"
    )
    with pytest.raises(ConfigError, match=r"cannot fetch http://mirror.invalid/debian.*\.deb"):
        collect(tmp_path / "out", debs.DebianOptions(private, UNREACHABLE))


def test_the_sbom_lists_every_deb_with_its_purl_and_hash(collected: Collected) -> None:
    found = collected.of("debian12")
    document = sbom.debs_sbom(found, "1.0.0", 1763769600)
    assert document == sbom.debs_sbom(found, "1.0.0", 1763769600)
    by_ref = {c["bom-ref"]: c for c in document["components"]}
    assert len(by_ref) == len(found.debs)
    for deb in found.debs:
        purl = PackageURL(
            "deb",
            "debian",
            deb.name,
            deb.version,
            {"arch": deb.architecture, "distro": "debian-12"},
        ).to_string()
        assert by_ref[purl]["hashes"] == [{"alg": "SHA-256", "content": deb.sha256}]
    assert schema_errors(document) == [] and graph_errors(document) == []


# --- Debian's own metadata, tampered with ---------------------------------------------------------------


@pytest.fixture
def debian12_copy(collected: Collected, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """debs/debian12 of the collected bundle as hard links (tamper only through `replace`)."""
    root = tmp_path / layout.top_dir("1.0.0")
    shutil.copytree(collected.root / "debs/debian12", root / "debs/debian12", copy_function=os.link)
    return root, collected.manifest("debian12")


def replace(path: Path, change: Callable[[bytes], bytes]) -> None:
    """A new file with changed bytes (the hard-linked original stays as it was)."""
    data = change(path.read_bytes())
    path.unlink()
    path.write_bytes(data)


def flipped(offset: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def rehash(root: Path, manifest: dict[str, Any]) -> None:
    """Make the manifest agree with the InRelease files as they now are (a forger's next step)."""
    for source in manifest["targets"][0]["sources"]:
        path = root / "debs/debian12" / source["archive"] / "dists" / source["suite"] / "InRelease"
        source["inrelease_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()


def refused(root: Path, manifest: dict[str, Any], reason: str, words: str) -> None:
    with pytest.raises(BundleRejected) as caught:
        verify_debian_packages(root, manifest, KEYRING)
    assert caught.value.reason == reason, caught.value
    assert words in str(caught.value)


def test_a_byte_flipped_in_debians_inrelease_is_a_bad_signature(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    path = root / "debs/debian12/debian/dists/bookworm/InRelease"
    replace(path, flipped(path.read_bytes().index(b"Codename: bookworm") + 11))
    refused(root, manifest, "bad-manifest", "differs from its inrelease_sha256")
    rehash(root, manifest)
    refused(root, manifest, "debian-signature", "bad signature")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_debian_inrelease_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]], keep: float
) -> None:
    root, manifest = debian12_copy
    path = root / "debs/debian12/debian-security/dists/bookworm-security/InRelease"
    replace(path, lambda data: data[: int(len(data) * keep)])
    rehash(root, manifest)
    refused(root, manifest, "debian-signature", "cut short or garbled")


def test_a_changed_debian_packages_xz_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    path = root / "debs/debian12/debian/dists/bookworm/main/binary-amd64/Packages.xz"
    replace(path, flipped(1000))
    refused(root, manifest, "debian-metadata", "is not the file its InRelease lists")


def test_a_truncated_debian_packages_xz_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    path = (
        root / "debs/debian12/debian-security/dists/bookworm-security/main/binary-amd64/Packages.xz"
    )
    replace(path, lambda data: data[:-100])
    refused(root, manifest, "debian-metadata", "is not the file its InRelease lists")


def test_a_changed_debian_deb_is_refused(debian12_copy: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = debian12_copy
    entry = manifest["targets"][0]["closure"]["podman"][0]
    replace(root / "debs/debian12" / entry["file"], flipped(500))
    refused(root, manifest, "debian-package", "is not the .deb Debian's Packages lists")


def test_an_extra_deb_beside_debians_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    entry = manifest["targets"][0]["closure"]["podman"][0]
    extra = root / "debs/debian12/debian/pool/main/e/extra/extra_1.0_amd64.deb"
    extra.parent.mkdir(parents=True)
    shutil.copyfile(root / "debs/debian12" / entry["file"], extra)
    refused(root, manifest, "unlisted-file", "extra_1.0_amd64.deb")


def test_a_closure_entry_climbing_out_with_dots_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    entry = manifest["targets"][0]["closure"]["docker"][0]
    entry["file"] = "debian/pool/../../../../../etc/passwd.deb"
    refused(root, manifest, "bad-manifest", "climbs out with '..'")


def test_a_closure_entry_with_another_version_is_refused(
    debian12_copy: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = debian12_copy
    manifest["targets"][0]["closure"]["podman"][-1]["version"] += "+evil"
    refused(root, manifest, "bad-manifest", "disagrees with Debian's Packages stanza")


def test_the_auditors_script_finds_a_changed_deb_too(
    debian12_copy: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, manifest = debian12_copy
    entry = manifest["targets"][0]["closure"]["docker"][-1]
    replace(root / "debs/debian12" / entry["file"], flipped(500))
    result = run_auditor_script(auditor_script(tmp_path), root / "debs/debian12")
    assert result.returncode != 0
    assert f"{entry['file']}: FAILED" in result.stdout
    assert "Good signature" in result.stderr
