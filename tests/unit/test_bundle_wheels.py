"""The node's own wheel (bundle/wheels.py) carries node code only, and that code needs no builder;
its metadata names the project's licence."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model.license import LicenseAcknowledgement

from appliance.bundles.bundle_layout import NODE_PACKAGES
from bundle import sbom
from bundle.wheels import build_project_wheel

REPO = Path(__file__).resolve().parents[2]
EPOCH = 1_700_000_000


def test_the_node_wheel_packs_the_node_packages_and_no_builder(tmp_path: Path) -> None:
    wheel = build_project_wheel(REPO, tmp_path, EPOCH)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == set(NODE_PACKAGES)
    assert not [name for name in names if name.startswith(("bundle/", "ml_workstation/"))]


def test_every_module_of_the_node_wheel_imports_without_the_builder(tmp_path: Path) -> None:
    wheel = build_project_wheel(REPO, tmp_path, EPOCH)
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
        modules = sorted(
            name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            for name in archive.namelist()
            if name.endswith(".py") and not name.endswith("__main__.py")
        )
    # -S: no .pth files, so neither the development checkout's editable install nor the repository
    # is on the path, only the unpacked wheel and the third-party packages, as on a node.
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, *modules],
        cwd=unpacked,
        env={"PYTHONPATH": os.pathsep.join(paths), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_node_wheel_declares_the_project_s_licence(tmp_path: Path) -> None:
    """The SBOMs read it: the project's own component names its SPDX licence."""
    wheel = build_project_wheel(REPO, tmp_path, EPOCH)
    assert sbom.read_wheel(wheel).licenses == (
        LicenseFactory().make_with_id(
            "Apache-2.0", acknowledgement=LicenseAcknowledgement.DECLARED
        ),
    )
