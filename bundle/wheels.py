"""The wheel cache: every wheel the node installs, for the node's Python, pinned by hash.

Third-party wheels come from `requirements/node.lock` (made with `uv pip compile
--generate-hashes` for the target, see docs/building.md) and are fetched by `pip download` for
the target's tags, not the build machine's. Downloads are cached under the build cache, outside
the bundle. The project's own wheel is written here, reproducibly, from the source tree.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.audit.distribution_names import NAME_PATTERN, normalise_name
from appliance.errors import ConfigError
from appliance.fsio import SHA256_HEX, atomic_output, atomic_write_bytes, sha256_file
from appliance.progress import Progress
from bundle import layout, tools

PROJECT_SCRIPTS = {"appliance": "appliance.cli:main"}
PROJECT_DATA_SUFFIXES = (".json", ".typed", ".html", ".svg", ".js", ".css", ".woff2")
WHEEL_TAG = "py3-none-any"

_LOCK_LINE = re.compile(rf"^({NAME_PATTERN})==([^\s\\;]+)")
_HASH = re.compile(rf"--hash=sha256:({SHA256_HEX})")


@dataclass(frozen=True)
class Pinned:
    """One locked distribution: its name, exact version and the sha256 of each allowed file."""

    name: str
    version: str
    hashes: tuple[str, ...]

    @property
    def key(self) -> str:
        return normalise_name(self.name)


def read_lock(path: Path) -> list[Pinned]:
    """Parse a hash-pinned requirements lock; every requirement must be `name==version` with hashes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the lock {path}: {exc.strerror}"
        raise ConfigError(msg) from exc
    pinned: list[Pinned] = []
    current: tuple[str, str] | None = None
    hashes: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LOCK_LINE.match(line)
        if match:
            if current:
                pinned.append(Pinned(*current, tuple(hashes)))
            current, hashes = (match[1], match[2]), []
        elif current is None:
            msg = f"{path}: {raw.strip()!r} is not a pinned requirement (name==version)"
            raise ConfigError(msg)
        hashes.extend(_HASH.findall(line))
    if current:
        pinned.append(Pinned(*current, tuple(hashes)))
    unhashed = [p.name for p in pinned if not p.hashes]
    if unhashed:
        msg = f"{path}: no --hash for {', '.join(unhashed)}; regenerate it with --generate-hashes"
        raise ConfigError(msg)
    return pinned


def target_platforms(glibc: tuple[int, int] = layout.TARGET_GLIBC) -> list[str]:
    """pip --platform values for an x86_64 glibc node: every manylinux tag it can run."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def target_flags(python: str) -> list[str]:
    """The pip flags that select wheels for the target instead of the build machine."""
    flags = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for platform in target_platforms():
        flags += ["--platform", platform]
    return flags


def download(
    lock: Path, dest: Path, cache_dir: Path, pythons: Iterable[str], progress: Progress
) -> dict[str, list[Path]]:
    """Fetch every wheel the lock pins for each target Python, checking each hash, into `dest`.

    Returns, for each Python, the one wheel per pin that it installs; a pure wheel serves every
    Python and is in `dest` once.
    """
    dest.mkdir(parents=True, exist_ok=True)
    pinned = read_lock(lock)
    chosen: dict[str, list[Path]] = {}
    for python in dict.fromkeys(pythons):
        staging = dest / f".download-{python}"
        progress(f"wheels: fetching {len(pinned)} pinned distributions for CPython {python} x86_64")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "--cache-dir",
            str(cache_dir / "pip"),
            "--dest",
            str(staging),
            *target_flags(python),
            "-r",
            str(lock),
        ]
        tools.run(command, f"wheels: download for CPython {python} failed")
        files = []
        for path in match_lock(pinned, staging.glob("*.whl")):
            final = dest / path.name
            if final.exists():
                path.unlink()  # a pure wheel another Python fetched already: the same hash
            else:
                path.replace(final)
            files.append(final)
        shutil.rmtree(staging)
        chosen[python] = sorted(files)
    return chosen


def requirements_of(wheel: Path, python: str) -> list[str]:
    """The distributions `wheel` requires on CPython `python` on Linux (no extras), normalised."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    environment: dict[str, str] = {
        **{key: str(value) for key, value in default_environment().items()},
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode("utf-8")
    needed = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        if requirement.marker is None or requirement.marker.evaluate(environment):
            needed.append(normalise_name(requirement.name))
    return needed


def bootstrap_closure(
    pinned: Iterable[Pinned], by_python: dict[str, list[Path]], roots: Iterable[str]
) -> list[Pinned]:
    """The pins `roots` need on any target Python, read from the wheels' own metadata."""
    by_key = {pin.key: pin for pin in pinned}
    wanted: set[str] = set()
    for python, files in by_python.items():
        wheel_of = {normalise_name(path.name.split("-")[0]): path for path in files}
        seen: set[str] = set()
        todo = [normalise_name(root) for root in roots]
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            if key not in by_key or key not in wheel_of:
                msg = f"wheels: {key}, which {', '.join(roots)} needs on CPython {python}, is not in the lock"
                raise ConfigError(msg)
            seen.add(key)
            todo.extend(requirements_of(wheel_of[key], python))
        wanted |= seen
    return sorted((by_key[key] for key in wanted), key=lambda pin: pin.key)


def write_bootstrap_lock(
    out: Path, pinned: Iterable[Pinned], by_python: dict[str, list[Path]]
) -> None:
    """wheels/bootstrap.lock: what install.sh installs, before anything changes, to run Ansible."""
    closure = bootstrap_closure(pinned, by_python, layout.BOOTSTRAP_ROOTS)
    lines = [
        "# install.sh installs these into a temporary folder with pip run from its own wheel:",
        f"#   python3 wheels/pip-*.whl/pip install --no-index --find-links wheels/ --require-hashes"
        f" --target DIR -r wheels/{layout.BOOTSTRAP_LOCK}",
    ]
    for pin in closure:
        hashes = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(pin.hashes))
        lines.append(f"{pin.key}=={pin.version} \\\n{hashes}")
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())


def match_lock(pinned: Iterable[Pinned], files: Iterable[Path]) -> list[Path]:
    """The one wheel file per pinned distribution, checked against the lock's hashes."""
    by_key: dict[str, list[Path]] = {}
    for path in files:
        by_key.setdefault(normalise_name(path.name.split("-")[0]), []).append(path)
    chosen: list[Path] = []
    for pin in pinned:
        candidates = [p for p in by_key.get(pin.key, []) if p.name.split("-")[1] == pin.version]
        if len(candidates) != 1:
            msg = (
                f"wheels: expected one wheel of {pin.name}=={pin.version}, found {len(candidates)}"
            )
            raise ConfigError(msg)
        digest = sha256_file(candidates[0])
        if digest not in pin.hashes:
            msg = f"wheels: {candidates[0].name} has sha256 {digest}, which the lock does not allow"
            raise ConfigError(msg)
        chosen.append(candidates[0])
    return sorted(chosen)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def project_metadata(root: Path) -> tuple[str, str, list[str], str, str]:
    """(name, version, dependencies, summary, licence) from pyproject.toml."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        return (
            project["name"],
            project["version"],
            list(project.get("dependencies", [])),
            project.get("description", ""),
            project.get("license", ""),
        )
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        msg = f"cannot read [project] from {root / 'pyproject.toml'}: {exc}"
        raise ConfigError(msg) from exc


def _tracked(root: Path) -> set[str] | None:
    """The files git tracks under `root`, or None when `root` is not a git checkout."""
    listing = tools.probe(["git", "ls-files", "-z"], cwd=root)
    if listing is None:
        return None
    return {name for name in listing.split("\0") if name}


def _project_files(root: Path) -> list[tuple[str, Path]]:
    """The node packages' sources and data (layout.NODE_PACKAGES: never the builder's); in a git
    checkout only what git tracks, so that an untracked file never ships unnoticed (the
    revision's -dirty mark covers tracked files only)."""
    tracked = _tracked(root)
    files: list[tuple[str, Path]] = []
    for package in layout.NODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root)
            if tracked is not None and relative.as_posix() not in tracked:
                continue
            if (
                not path.is_file()
                or "__pycache__" in relative.parts
                or "node_modules" in relative.parts
            ):
                continue
            if (
                package == "server"
                and "frontend" in relative.parts
                and "dist" not in relative.parts
            ):
                continue  # the frontend's sources stay in the repository; its build ships
            if path.suffix == ".py" or path.suffix in PROJECT_DATA_SUFFIXES:
                files.append((relative.as_posix(), path))
    return files


def build_project_wheel(root: Path, dest: Path, source_date_epoch: int) -> Path:
    """Write the project's node-side wheel from `root`, byte for byte the same for the same tree."""
    name, version, dependencies, summary, license_expression = project_metadata(root)
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {name}",
            f"Version: {version}",
            f"Summary: {summary}",
            # Metadata 2.1's License field (PEP 639's License-Expression needs 2.4): the SBOMs
            # read the SPDX expression from it.
            *([f"License: {license_expression}"] if license_expression else []),
            "Requires-Python: >=3.11",
            *(f"Requires-Dist: {dep}" for dep in dependencies),
            "",
        ]
    )
    wheel = f"Wheel-Version: 1.0\nGenerator: appliance build_bundle\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n"
    scripts = "".join(f"{k} = {v}\n" for k, v in PROJECT_SCRIPTS.items())
    members: list[tuple[str, bytes]] = [
        (arcname, path.read_bytes()) for arcname, path in _project_files(root)
    ]
    members += [
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", wheel.encode()),
        (f"{info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode()),
    ]
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in members) + f"{info}/RECORD,,\n"
    members.append((f"{info}/RECORD", record.encode()))
    stamp = max(source_date_epoch, 315532800)  # zip times start in 1980
    date_time = _zip_time(stamp)
    out = dest / f"{dist}-{WHEEL_TAG}.whl"
    with atomic_output(out) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in members:
            entry = zipfile.ZipInfo(arcname, date_time)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return out


def _zip_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    import time

    t = time.gmtime(epoch)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def write_wheel_lock(out: Path, pinned: list[Pinned], project_wheel: Path) -> None:
    """wheels/requirements.lock: the node lock plus the project's wheel, every line hash-pinned."""
    name, version = project_wheel.name.split("-")[:2]
    lines = [
        "# Install on the node with:",
        f"#   pip install --no-index --find-links wheels/ --require-hashes -r wheels/{layout.WHEELS_LOCK}",
    ]
    entries = [*pinned, Pinned(name, version, (sha256_file(project_wheel),))]
    for pin in sorted(entries, key=lambda p: p.key):
        hashes = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(pin.hashes))
        lines.append(f"{pin.key}=={pin.version} \\\n{hashes}")
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())


def install_target(wheels: Iterable[Path], target: Path, python: str, progress: Progress) -> None:
    """Unpack `wheels` into the folder `target` (a site-packages), as pip does, without .pyc files."""
    files = sorted(wheels)
    progress(f"image: installing {len(files)} wheels into its site-packages")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--target",
        str(target),
        *target_flags(python),
        *map(str, files),
    ]
    tools.run(command, "image: installing wheels failed")
    _forget_wheel_paths(target)


def _forget_wheel_paths(target: Path) -> None:
    """Drop pip's direct_url.json (it records the wheel's build-time path) and its RECORD line."""
    for direct_url in sorted(target.glob("*.dist-info/direct_url.json")):
        record = direct_url.with_name("RECORD")
        direct_url.unlink()
        if record.is_file():
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [
                line
                for line in lines
                if not line.startswith(f"{direct_url.parent.name}/direct_url.json,")
            ]
            record.write_text("".join(kept), encoding="utf-8")
