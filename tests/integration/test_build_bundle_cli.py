"""build_bundle.py on a broken machine or with bad input: one line, a documented exit code, at once.

Each case runs the real command. It must end with exactly one `error: ...` line, print no
traceback, exit with the code docs/building.md gives, and refuse before step 1 (the slow steps
print `[n/12]`), leaving nothing in --out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, build_env

REFUSED = 2  # docs/building.md: a flag, input, tool, Python package or engine is wrong or missing
MACHINE_FAULT = 4  # docs/building.md: the build machine failed under a step

# A mock of "the docker package is not installed": this venv has it, so a sitecustomize on
# PYTHONPATH puts a finder first on the import path that refuses it, as a Python without it would.
DOCKER_NOT_INSTALLED = """\
import sys


class DockerNotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == "docker" or name.startswith("docker."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, DockerNotInstalled())
"""


def build(
    cwd: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "build_bundle.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env or build_env(),
        timeout=120,
        check=False,
        cwd=cwd,
    )


def assert_refused(
    result: subprocess.CompletedProcess[str], code: int, *words: str, out: Path | None = None
) -> str:
    """One error line (the last), no traceback, `code`, no step started; returns the line."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    for word in words:
        assert word in errors[0], errors[0]
    if code == REFUSED:
        assert "[1/12]" not in result.stderr, "refused only after the slow steps began"
    if out is not None:
        assert not out.exists() or not list(out.iterdir()), list(out.iterdir())
    return errors[0]


@pytest.fixture
def key(release_key: tuple[Path, Path, str, str]) -> Path:
    return release_key[0]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A mount point for a tmpfs the test mounts (CI runs as root), unmounted afterwards."""
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    subprocess.run(["umount", str(point)], capture_output=True, check=False)


def mount_tmpfs(point: Path, options: str) -> None:
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


def test_a_python_without_the_docker_package_is_refused_at_once(tmp_path: Path, key: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DOCKER_NOT_INSTALLED)
    env = {**build_env(), "PYTHONPATH": str(site)}
    out = tmp_path / "out"
    result = build(tmp_path, "--version", "1.0", "--key", key, "--out", out, env=env)
    assert_refused(result, REFUSED, "docker package is not installed", "--skip-engine-check")


def test_an_unreachable_engine_is_refused_at_once(tmp_path: Path, key: Path) -> None:
    env = build_env("unix:///nonexistent/engine.sock")
    out = tmp_path / "out"
    result = build(tmp_path, "--version", "1.0", "--key", key, "--out", out, env=env)
    assert_refused(result, REFUSED, "unix:///nonexistent/engine.sock does not answer", out=out)


def test_without_the_docker_package_skip_engine_check_passes_the_preflight(
    tmp_path: Path, key: Path
) -> None:
    """The docker package is needed by the engine check only (same mock as above)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DOCKER_NOT_INSTALLED)
    env = {**build_env(), "PYTHONPATH": str(site)}
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w"):
        pass
    # A lock that is not one stops step 1 at once, after the preflight passed (which reads the
    # image's labels from pyproject.toml).
    source = tmp_path / "source"
    (source / "requirements").mkdir(parents=True)
    (source / "requirements" / "node.lock").write_text("not a lock\n")
    (source / "pyproject.toml").write_text("[project]\nname = 'appliance'\nversion = '1.0'\n")
    result = build(
        tmp_path,
        "--version",
        "1.0",
        "--key",
        key,
        "--out",
        tmp_path / "out",
        "--skip-engine-check",
        "--source-root",
        source,
        "--base-rootfs",
        base,
        env=env,
    )
    assert result.returncode == REFUSED, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "engine skipped (--skip-engine-check)" in result.stderr
    assert "[1/12] lock" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "not a pinned requirement" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("key_file", "words"),
    [
        ("absent.key", ["--key", "does not exist", "mlws keygen"]),
        ("not-a-key.key", ["--key", "not an OpenSSH private key"]),
        ("folder.key", ["--key", "is a directory"]),
    ],
)
def test_a_bad_key_file_is_one_line(tmp_path: Path, key_file: str, words: list[str]) -> None:
    (tmp_path / "not-a-key.key").write_text("-----BEGIN RSA PRIVATE KEY-----\n")
    (tmp_path / "folder.key").mkdir()
    out = tmp_path / "out"
    result = build(tmp_path, "--version", "1.0", "--key", tmp_path / key_file, "--out", out)
    assert_refused(result, REFUSED, *words, out=out)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--version", "1.0 beta"], ["--version '1.0 beta' must match"]),
        (["--version", "../1"], ["must match"]),
        (["--version", "1" * 65], ["must match"]),
        (["--version", "1.0", "--min-upgrade-from", ""], ["is not a version"]),
        (["--version", "1.0", "--bogus"], ["No such option", "--help"]),
        ([], ["Missing option '--version'", "--help"]),
        (["--version", "1.0", "--out"], ["--out", "requires an argument"]),
        (
            ["--version", "1.0", "--engines", "podman,lxc"],
            ["--engines 'podman,lxc'", "choose from"],
        ),
        (["--version", "1.0", "--engines", ""], ["--engines ''", "choose from podman, docker"]),
        (["--version", "1.0", "--debian-mirror", "ftp://x"], ["--debian-mirror 'ftp://x'"]),
        (["--version", "1.0", "--debian-mirror", "deb.debian.org"], ["the mirror's root"]),
        (["--version", "1.0", "--debian-keyring", "/nonexistent.gpg"], ["no keyring at"]),
    ],
)
def test_bad_flags_are_one_line(
    tmp_path: Path, key: Path, args: list[str], words: list[str]
) -> None:
    out = tmp_path / "out"
    result = build(tmp_path, "--key", key, "--out", out, *args)
    assert_refused(result, REFUSED, *words)


@pytest.mark.parametrize(
    ("epoch", "words"),
    [
        ("yesterday", ["not a whole number"]),
        ("1", ["before 1980"]),
        ("99999999999", ["after 2107"]),
    ],
)
def test_a_bad_source_date_epoch_is_one_line(
    tmp_path: Path, key: Path, epoch: str, words: list[str]
) -> None:
    env = {**build_env(), "SOURCE_DATE_EPOCH": epoch}
    out = tmp_path / "out"
    result = build(
        tmp_path, "--version", "1.0", "--key", key, "--out", out, "--skip-engine-check", env=env
    )
    assert_refused(result, REFUSED, *words, out=out)


def test_an_out_folder_under_a_file_is_refused(tmp_path: Path, key: Path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    result = build(tmp_path, "--version", "1.0", "--key", key, "--out", out, "--skip-engine-check")
    assert_refused(result, REFUSED, f"--out {out}: cannot write there", "Not a directory")


def test_a_read_only_out_folder_is_refused(tmp_path: Path, key: Path, tmpfs: Path) -> None:
    mount_tmpfs(tmpfs, "ro,size=1m")
    result = build(
        tmp_path, "--version", "1.0", "--key", key, "--out", tmpfs, "--skip-engine-check"
    )
    assert_refused(result, REFUSED, f"--out {tmpfs}: cannot write there", "Read-only file system")


def test_a_read_only_cache_folder_is_refused(tmp_path: Path, key: Path, tmpfs: Path) -> None:
    mount_tmpfs(tmpfs, "ro,size=1m")
    out = tmp_path / "out"
    result = build(
        tmp_path,
        "--version",
        "1.0",
        "--key",
        key,
        "--out",
        out,
        "--cache-dir",
        tmpfs / "cache",
        "--skip-engine-check",
    )
    assert_refused(result, REFUSED, "--cache-dir", "cannot write there", out=out)


def test_missing_mmdebstrap_is_refused_before_the_slow_steps(tmp_path: Path, key: Path) -> None:
    """An empty cache needs mmdebstrap to make the base rootfs; PATH here has only git."""
    tools = tmp_path / "bin"
    tools.mkdir()
    git = shutil.which("git")
    if git is not None:
        (tools / "git").symlink_to(git)
    env = {**build_env(), "PATH": str(tools)}
    out = tmp_path / "out"
    result = build(
        tmp_path,
        "--version",
        "1.0",
        "--key",
        key,
        "--out",
        out,
        "--cache-dir",
        tmp_path / "empty-cache",
        "--skip-engine-check",
        env=env,
    )
    assert_refused(result, REFUSED, "mmdebstrap not found", "--base-rootfs", out=out)


def test_missing_apt_get_is_refused_before_the_slow_steps(tmp_path: Path, key: Path) -> None:
    """The debs step resolves with the build machine's apt-get; PATH here has git and mmdebstrap."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("git", "mmdebstrap"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"needs {tool}")
        (tools / tool).symlink_to(found)
    env = {**build_env(), "PATH": str(tools)}
    out = tmp_path / "out"
    result = build(
        tmp_path,
        "--version",
        "1.0",
        "--key",
        key,
        "--out",
        out,
        "--cache-dir",
        tmp_path / "empty-cache",
        "--skip-engine-check",
        env=env,
    )
    assert_refused(result, REFUSED, "debs: apt-get not found", out=out)


def test_a_python_without_the_project_dependencies_is_one_line(tmp_path: Path) -> None:
    """`python3 build_bundle.py` outside the dev environment: -S leaves this venv's packages out."""
    result = subprocess.run(
        [sys.executable, "-S", str(REPO / "build_bundle.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    line = assert_refused(result, REFUSED, "is not installed", ".venv/bin/python build_bundle.py")
    assert "click" in line


def test_a_disk_that_fills_during_the_build_is_a_machine_fault(
    tmp_path: Path, key: Path, tmpfs: Path
) -> None:
    """A real full disk: a tmpfs with room for the preflight's probe file and nothing more."""
    # nr_inodes=2: the root folder and one more, which the probe and then the scratch folder use.
    mount_tmpfs(tmpfs, "size=1m,nr_inodes=2")
    result = build(
        tmp_path, "--version", "1.0", "--key", key, "--out", tmpfs, "--skip-engine-check"
    )
    assert_refused(result, MACHINE_FAULT, "No space left on device", "free space")
    assert os.listdir(tmpfs) == []  # the scratch folder is gone


@pytest.mark.slow
def test_a_truncated_base_rootfs_is_one_line(tmp_path: Path, key: Path) -> None:
    """Its first header reads (the preflight passes it); the image step finds the cut."""
    whole = tmp_path / "whole.tar"
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(200_000))
    with tarfile.open(whole, "w") as tar:
        tar.add(payload, "usr/lib/payload")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:100_000])
    out = tmp_path / "out"
    result = build(
        tmp_path,
        "--version",
        "1.0",
        "--key",
        key,
        "--out",
        out,
        "--skip-engine-check",
        "--base-rootfs",
        cut,
        env={**build_env(), "SOURCE_DATE_EPOCH": "1763769600"},
    )
    assert result.returncode == REFUSED, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: base rootfs") and "not a readable tar archive" in last, last
    assert not list(out.iterdir())


def test_a_source_tree_whose_project_has_no_name_is_one_line(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "source"
    (source / "requirements").mkdir(parents=True)
    shutil.copy(REPO / "requirements" / "node.lock", source / "requirements" / "node.lock")
    (source / "pyproject.toml").write_text('[project]\nversion = "1.0"\n')
    out = tmp_path / "out"
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w"):
        pass
    result = build(
        tmp_path,
        *("--version", "1.0", "--key", key, "--out", out, "--skip-engine-check"),
        *("--source-root", source, "--base-rootfs", base),
    )
    assert result.returncode == REFUSED, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot read [project] from") and "'name'" in last, last
