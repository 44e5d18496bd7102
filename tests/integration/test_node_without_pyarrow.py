"""The node runs without pyarrow, so the server image ships without it (docs/building.md, "What
the image leaves out").

pyarrow is installed where the tests run (the workstation tools and the tests use it), so each test
makes it unimportable first. In one process: an import hook first on sys.meta_path refuses it and
notes every attempt, so an attempt that some code catches is seen too. For the real server, whose
workers are processes of their own: a stand-in `pyarrow` package first on PYTHONPATH that fails
to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Signer, import_into
from tests.integration.live_server import live_server

NODE_PACKAGES = ("appliance", "server")

# Imports every module of the node's packages, then runs `appliance import` in this process.
IMPORT_WITHOUT_PYARROW = """
import importlib, json, pkgutil, sys

class RefusePyarrow:
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pyarrow":
            self.attempts.append(name)
            raise ImportError(f"No module named {name!r} (no pyarrow on the node)")
        return None

sys.meta_path.insert(0, RefusePyarrow())
packages, argv = sys.argv[1].split(","), sys.argv[2:]
modules = []
for package in packages:
    modules.append(package)
    for found in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if found.name.rpartition(".")[2] != "__main__":  # running the CLI is the next step
            importlib.import_module(found.name)
            modules.append(found.name)

from appliance.cli import main

try:
    main(argv, standalone_mode=False)
finally:
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] == "pyarrow")
    print(json.dumps({"modules": modules, "attempts": RefusePyarrow.attempts, "loaded": loaded}))
"""


def no_pyarrow_path(folder: Path) -> dict[str, str]:
    """Environment whose Python finds a `pyarrow` that fails to import before the real one."""
    stand_in = folder / "pyarrow"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text(
        'raise ImportError("pyarrow is not installed on the node")\n'
    )
    return {"PYTHONPATH": str(folder)}


def test_node_modules_and_a_pack_import_need_no_pyarrow(
    tmp_path: Path, good_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    argv = ["import", str(good_pack), "--data-dir", str(data_dir)]
    argv += ["--signers", str(signer.allowed_signers)]
    environment = os.environ | {
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_SIGNERS": str(signer.allowed_signers),
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_PYARROW, ",".join(NODE_PACKAGES), *argv],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.splitlines()
    report = json.loads(last)
    assert report["attempts"] == [], "the node tried to import pyarrow"
    assert report["loaded"] == []
    assert {"appliance.packs.result_pack", "appliance.data.importer", "server.app"} <= set(
        report["modules"]
    )
    assert printed == ["v0001"], done.stderr


def test_the_server_imports_and_serves_a_pack_without_pyarrow(
    tmp_path: Path, good_pack: Path, newer_pack: Path, signer: Signer
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    env = no_pyarrow_path(tmp_path / "site")
    refused = subprocess.run(
        [sys.executable, "-c", "import pyarrow"],
        capture_output=True,
        text=True,
        env=os.environ | env,
        check=False,
    )
    assert "pyarrow is not installed on the node" in refused.stderr, "the stand-in is not seen"
    with live_server(data_dir, signer.allowed_signers, workers=1, env=env) as server:
        upload = server.post(
            "/api/v1/data/packs", headers=server.admin(), content=newer_pack.read_bytes()
        )
        assert upload.status_code == 201, upload.text
        items = server.get("/api/v1/items", params={"limit": 2})
        assert items.status_code == 200, items.text
        item_id = items.json()["items"][0]["item_id"]
        timeseries = server.get(f"/api/v1/items/{item_id}/timeseries")
        assert timeseries.status_code == 200, timeseries.text
        assert server.get("/health/ready").status_code == 200
