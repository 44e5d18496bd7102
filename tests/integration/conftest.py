"""Fixtures for the bundle tests: a real container engine and a real bundle, built once a session.

The engine is Podman's Docker-compatible API service, started here on a private socket (no
daemon is left behind). The bundle is built by build_bundle.py from this source tree with a
fresh development key; downloads and the base rootfs come from the shared build cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.trust.sshsig import generate_key
from bundle import layout

REPO = Path(__file__).resolve().parents[2]
BUNDLE_VERSION = "1.0.0"
SOURCE_DATE_EPOCH = "1763769600"  # 2025-11-22T00:00:00Z
PODMAN_FLAGS = ("--runtime", "runc")
ENGINE_START_SECONDS = 30.0


@dataclass(frozen=True)
class BuiltBundle:
    archive: Path
    key: Path
    allowed_signers: Path
    principal: str
    fingerprint: str
    build_output: str
    engine_url: str


def build_command(version: str, key: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "build_bundle.py"),
        "--version",
        version,
        "--key",
        str(key),
        "--out",
        str(out),
        *extra,
    ]


def build_env(engine_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    if engine_url:
        env["DOCKER_HOST"] = engine_url
    return env


@pytest.fixture(scope="session")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running Podman API service on a private socket, stopped at the end of the session."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("needs podman and runc (.ci/run installs them)")
    socket = tmp_path_factory.mktemp("engine") / "podman.sock"
    service = subprocess.Popen(
        ["podman", *PODMAN_FLAGS, "system", "service", "--time=0", f"unix://{socket}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + ENGINE_START_SECONDS
    while not socket.exists() and time.monotonic() < deadline and service.poll() is None:
        time.sleep(0.1)
    if not socket.exists():
        service.kill()
        pytest.fail(f"podman system service did not create {socket}")
    try:
        yield f"unix://{socket}"
    finally:
        service.terminate()
        service.wait(timeout=30)


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """(key, allowed_signers, principal, fingerprint) of a fresh bundle signing key."""
    folder = tmp_path_factory.mktemp("release-key")
    principal = "release@appliance.test"
    public = generate_key(folder / "release.key", principal)
    allowed = folder / "allowed_signers"
    line = f'{principal} namespaces="{layout.SIGNATURE_NAMESPACE}" {public.openssh_line()}\n'
    allowed.write_text(line)
    return folder / "release.key", allowed, principal, public.fingerprint


@pytest.fixture(scope="session")
def built_bundle(
    tmp_path_factory: pytest.TempPathFactory,
    engine_url: str,
    release_key: tuple[Path, Path, str, str],
) -> BuiltBundle:
    """appliance-1.0.0.tar built from this tree, engine check included."""
    key, allowed, principal, fingerprint = release_key
    out = tmp_path_factory.mktemp("bundle")
    result = subprocess.run(
        build_command(BUNDLE_VERSION, key, out),
        capture_output=True,
        text=True,
        env=build_env(engine_url),
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"build_bundle.py failed:\n{result.stderr[-3000:]}")
    archive = out / layout.archive_name(BUNDLE_VERSION)
    return BuiltBundle(
        archive, key, allowed, principal, fingerprint, result.stdout + result.stderr, engine_url
    )


@pytest.fixture(scope="session")
def unpacked_bundle(tmp_path_factory: pytest.TempPathFactory, built_bundle: BuiltBundle) -> Path:
    """The built bundle unpacked with stock tar: its appliance-<version>/ folder."""
    folder = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["tar", "-xf", str(built_bundle.archive), "-C", str(folder)], check=True)
    return folder / layout.top_dir(BUNDLE_VERSION)
