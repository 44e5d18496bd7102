"""The USB stick and the simulated node of the end-to-end test.

The stick holds three bundles built by build_bundle.py from this tree:

- 1.0.0 and 1.1.0;
- 1.2.0, a release that is broken on purpose: its server raises at start, so it never passes
  its health gate.

It also holds two result packs, the packs' allowed_signers, and nothing else. The node has no
network; it sees the stick read-only at /media/usb.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.trust.sshsig import generate_key
from bundle import layout
from tests.conftest import Signer
from tests.e2e.simnode import Node, NodeKind, kinds_from_env, start_node
from tests.integration.conftest import REPO, build_command, build_env

BROKEN_MARK = "raise RuntimeError('this release is broken on purpose (tests/e2e)')\n"


@dataclass(frozen=True)
class Stick:
    folder: Path
    fingerprint: str
    bundles: dict[str, str]  # version -> archive file name on the stick
    release_key: Path  # the release team's private key (never on the stick): signs updates


def _needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (.ci/run installs them)")


def _broken_tree(folder: Path) -> Path:
    """A copy of the tracked source tree whose server raises as it starts."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            target = folder / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    asgi = folder / "server" / "asgi.py"
    asgi.write_text(asgi.read_text() + BROKEN_MARK)
    return folder


def _build(version: str, key: Path, out: Path, *extra: str) -> str:
    result = subprocess.run(
        [*build_command(version, key, out, "--skip-engine-check"), *extra],
        capture_output=True,
        text=True,
        env=build_env(),
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"build_bundle.py {version} failed:\n{result.stderr[-3000:]}")
    return layout.archive_name(version)


@pytest.fixture(scope="session")
def stick(
    tmp_path_factory: pytest.TempPathFactory, good_pack: Path, newer_pack: Path, signer: Signer
) -> Stick:
    _needs("podman", "runc", "mmdebstrap", "ssh-keygen")
    folder = tmp_path_factory.mktemp("usb")
    keys = tmp_path_factory.mktemp("release")
    public = generate_key(keys / "release.key", "release@appliance.test")
    bundles = {
        version: _build(version, keys / "release.key", folder) for version in ("1.0.0", "1.1.0")
    }
    broken = _broken_tree(tmp_path_factory.mktemp("broken-src"))
    bundles["1.2.0"] = _build("1.2.0", keys / "release.key", folder, "--source-root", str(broken))
    shutil.copy(good_pack, folder / "results-1.pack")
    shutil.copy(newer_pack, folder / "results-2.pack")
    shutil.copy(signer.allowed_signers, folder / "pack_signers")
    other = generate_key(keys / "other.key", "someone@else")
    (folder / "other_signers").write_text(
        f'someone@else namespaces="{layout.SIGNATURE_NAMESPACE}" {other.openssh_line()}\n'
    )
    # A stick reads like a FAT stick mounted by the desktop: everyone may read it.
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return Stick(folder, public.fingerprint, bundles, keys / "release.key")


@pytest.fixture(scope="module", params=kinds_from_env(), ids=lambda kind: kind.name)
def node(request: pytest.FixtureRequest, stick: Stick) -> Iterator[Node]:
    """A fresh simulated node of each kind APPLIANCE_NODE_KINDS names (make node-test NODE=...),
    for the whole module: pytest runs every test of the module on one kind, then the next."""
    kind: NodeKind = request.param
    started = start_node(f"appliance-e2e-{kind.name}", stick.folder, kind)
    try:
        yield started
    finally:
        started.stop()
