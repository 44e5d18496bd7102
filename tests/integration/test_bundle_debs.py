"""The built bundle's Debian packages: debs/, the manifest's targets, their SBOMs, and what
`appliance verify` says of them (the bundle is the session's, built once by conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.bundles import bundle_layout as layout
from appliance.fsio import sha256_file
from tests.conftest import BIN, run
from tests.integration.conftest import (
    BUNDLE_VERSION,
    BuiltBundle,
    build_command,
    build_env,
)

pytestmark = pytest.mark.skipif(
    shutil.which("gpgv") is None or not Path(layout.DEBIAN_KEYRING).is_file(),
    reason="needs gpgv and Debian's keyring (debian-archive-keyring)",
)


def manifest_of(unpacked: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((unpacked / layout.MANIFEST).read_text())
    return manifest


def test_the_build_runs_the_debs_step_and_reports_each_target(built_bundle: BuiltBundle) -> None:
    assert "[4/12] debs" in built_bundle.build_output
    for target in layout.NODE_TARGETS:
        assert f"debs     {target.name}: podman " in built_bundle.build_output


def test_each_target_has_its_folder_sbom_and_manifest_entry(unpacked_bundle: Path) -> None:
    targets = manifest_of(unpacked_bundle)["targets"]
    assert [t["name"] for t in targets] == [t.name for t in layout.NODE_TARGETS]
    for entry in targets:
        target = layout.node_target(entry["name"])
        folder = unpacked_bundle / entry["debs_dir"]
        files = {item["file"] for closure in entry["closure"].values() for item in closure}
        assert {p.relative_to(folder).as_posix() for p in folder.rglob("*.deb")} == files
        assert entry["bytes"] == sum((folder / f).stat().st_size for f in files)
        sbom = json.loads((unpacked_bundle / layout.debs_sbom(target)).read_text())
        assert len(sbom["components"]) == len(files)
        distro = f"distro=debian-{target.os_version_id}"
        assert all(c["purl"].endswith(distro) for c in sbom["components"])


def test_appliance_verify_traces_every_deb_to_debian(built_bundle: BuiltBundle) -> None:
    result = run(
        "appliance", "verify", built_bundle.archive, "--signers", built_bundle.allowed_signers
    )
    assert result.returncode == 0, result.stderr
    assert "each traced to Debian's InRelease signed by a key in" in result.stdout
    as_json = run(
        "appliance",
        "verify",
        built_bundle.archive,
        "--signers",
        built_bundle.allowed_signers,
        "--json",
        check=True,
    )
    debian = json.loads(as_json.stdout)["debian"]
    assert [t["name"] for t in debian["targets"]] == ["debian12", "debian13"]
    assert debian["keyring"] == layout.DEBIAN_KEYRING


def test_without_gpgv_appliance_verify_says_so_and_passes(
    built_bundle: BuiltBundle, tmp_path: Path
) -> None:
    """The bundle's own signature still covers the .debs; only Debian's is left unchecked."""
    result = subprocess.run(
        [
            str(BIN / "appliance"),
            "verify",
            str(built_bundle.archive),
            "--signers",
            str(built_bundle.allowed_signers),
        ],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "note: the .debs' Debian signatures were not checked: gpgv is not installed" in (
        result.stderr
    )
    assert "traced to Debian" not in result.stdout


def test_a_keyring_named_but_missing_is_one_line(built_bundle: BuiltBundle, tmp_path: Path) -> None:
    result = run(
        "appliance",
        "verify",
        built_bundle.archive,
        "--signers",
        built_bundle.allowed_signers,
        "--debian-keyring",
        tmp_path / "none.gpg",
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --debian-keyring: no keyring at")


@pytest.mark.slow
def test_a_rebuild_from_the_filled_cache_needs_no_debian_mirror(
    tmp_path: Path, built_bundle: BuiltBundle
) -> None:
    """A mirror that cannot even resolve: the cache holds everything, and the bytes are the same."""
    result = subprocess.run(
        build_command(
            BUNDLE_VERSION,
            built_bundle.key,
            tmp_path,
            "--skip-engine-check",
            "--debian-mirror",
            "http://mirror.invalid",
        ),
        capture_output=True,
        text=True,
        env=build_env(),
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "debs: fetching" not in result.stderr
    again = tmp_path / layout.archive_name(BUNDLE_VERSION)
    assert sha256_file(again) == sha256_file(built_bundle.archive)
