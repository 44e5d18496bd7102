"""The server image: Debian's Python runtime, the server's wheels and the project, in three layers.

    base   the pruned Debian rootfs (bundle/rootfs.py), /etc/passwd with the `appliance` user,
           /tmp, the data and config folders, and .pyc files for the standard library
    deps   the third-party wheels the server imports (SERVER_DISTRIBUTIONS), installed as pip does
    app    the project's own wheel (appliance, server, bundle; no ml_workstation)

Upgrades usually change only `app`, so a node loads a few MB. The image ships sources and no
.pyc files (19 MB less, and the code an auditor scans is the code that runs): Python compiles
what it imports into PYTHONPYCACHEPREFIX on the /tmp tmpfs, about 0.2 s once per start.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance import REVISION_ENV
from appliance.audit.distribution_names import normalise_name
from appliance.errors import ConfigError
from appliance.progress import Progress
from bundle import layout, oci, wheels
from bundle.rootfs import BaseRootfs, runtime_entries

# What the server imports at run time (checked by the image smoke test in bundle/engine.py):
# the rest of the node lock (ansible-core, rich, faker via polyfactory, ...) stays out.
SERVER_DISTRIBUTIONS = (
    "anyio",
    "cffi",
    "click",
    "cryptography",
    "diskcache",
    "duckdb",
    "granian",
    "idna",
    "litestar",
    "litestar-htmx",
    "msgspec",
    "multidict",
    "multipart",
    "pycparser",
    "pyyaml",
    "sniffio",
    "typing-extensions",
)

# Labels (OCI image-spec annotations.md). `base.name` is the reference of a base image, and this
# image has none: its base is unpacked from Debian packages (bundle/rootfs.py), so the label is
# left out and the base rootfs tar's digest goes under the project's own prefix instead.
OCI_LABEL = "org.opencontainers.image."
BASE_ROOTFS_LABEL = f"{layout.IMAGE_LABEL_PREFIX}base.rootfs.digest"
# Who distributes the image and where to read about it: from pyproject.toml's table below (part
# of the sources, so a rebuild gives the same labels); an empty value leaves its label out.
PROJECT_LABELS_TABLE = "tool.appliance.image-labels"
PROJECT_LABELS = ("vendor", "url", "source", "documentation")
URL_LABELS = ("url", "source", "documentation")

HEALTHCHECK_SECONDS = {"Interval": 10, "Timeout": 5, "StartPeriod": 30}
HEALTHCHECK_RETRIES = 3
NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class ImageSources:
    """What the server image is made of, and the facts its labels record."""

    rootfs: BaseRootfs
    wheel_files: tuple[Path, ...]
    project_wheel: Path
    version: str
    revision: str
    source_date_epoch: int
    license: str
    project_labels: Mapping[str, str] = field(default_factory=dict)  # from project_labels()


def project_labels(root: Path) -> dict[str, str]:
    """The set values of pyproject.toml's [tool.appliance.image-labels] (vendor and the URLs).

    ConfigError, naming the key, for an unknown key, a value that is not one line of text, or a
    URL label that is not an absolute http(s) URL.
    """
    where = f"{root / 'pyproject.toml'} [{PROJECT_LABELS_TABLE}]"
    try:
        table: Any = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        msg = f"cannot read {root / 'pyproject.toml'}: {exc}"
        raise ConfigError(msg) from exc
    for key in PROJECT_LABELS_TABLE.split("."):
        table = table.get(key, {}) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        msg = f"{where} must be a table"
        raise ConfigError(msg)
    unknown = sorted(set(table) - set(PROJECT_LABELS))
    if unknown:
        msg = f"{where}: unknown key {unknown[0]!r} (known: {', '.join(PROJECT_LABELS)})"
        raise ConfigError(msg)
    labels = {}
    for key, value in table.items():
        if not isinstance(value, str) or value != " ".join(value.split()):
            msg = f"{where}: {key} must be one line of text without outer spaces"
            raise ConfigError(msg)
        parts = urlsplit(value)
        if (
            value
            and key in URL_LABELS
            and (parts.scheme not in ("http", "https") or not parts.netloc)
        ):
            msg = f"{where}: {key} {value!r} is not an absolute http(s) URL"
            raise ConfigError(msg)
        if value:
            labels[key] = value
    return labels


def _system_entries() -> list[oci.Entry]:
    uid = layout.IMAGE_USER_ID
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{layout.IMAGE_USER}:x:{uid}:{uid}:appliance server:{layout.IMAGE_DATA_DIR}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\n{layout.IMAGE_USER}:x:{uid}:\nnogroup:x:65534:\n"
    return [
        oci.file("etc/passwd", passwd.encode()),
        oci.file("etc/group", group.encode()),
        oci.directory("dev"),
        oci.directory("proc"),
        oci.directory("sys"),
        oci.directory("tmp", 0o1777),
        oci.directory("root", 0o700),
        oci.directory(layout.IMAGE_DATA_DIR, 0o750, uid, uid),
        oci.directory(layout.IMAGE_CONFIG_DIR, 0o755),
    ]


def _installed(wheel_files: Iterable[Path], work: Path, progress: Progress) -> list[oci.Entry]:
    """The wheels installed into a fresh folder, as entries under the image's site-packages."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    wheels.install_target(wheel_files, work, layout.IMAGE_PYTHON_VERSION, progress)
    shutil.rmtree(work / "bin", ignore_errors=True)  # console scripts point at the build's Python
    return list(oci.tree(work, layout.IMAGE_SITE_PACKAGES))


def server_wheels(wheel_files: Iterable[Path]) -> list[Path]:
    """The wheels of SERVER_DISTRIBUTIONS among `wheel_files`; all must be there."""
    by_name = {normalise_name(p.name.split("-")[0]): p for p in wheel_files}
    missing = [name for name in SERVER_DISTRIBUTIONS if name not in by_name]
    if missing:
        msg = f"image: the wheel cache lacks {', '.join(missing)} (is requirements/node.lock complete?)"
        raise ConfigError(msg)
    return [by_name[name] for name in SERVER_DISTRIBUTIONS]


def image_labels(sources: ImageSources, created: str) -> dict[str, str]:
    """The OCI labels, and the base rootfs's digest under the project's prefix."""
    labels = {
        "title": "appliance-server",
        "description": "Offline analytics appliance: read-only API and dashboard",
        "version": sources.version,
        "revision": sources.revision,
        "created": created,
        "licenses": sources.license,
        **{
            key: sources.project_labels[key]
            for key in PROJECT_LABELS
            if key in sources.project_labels
        },
    }
    return {f"{OCI_LABEL}{key}": value for key, value in labels.items()} | {
        BASE_ROOTFS_LABEL: sources.rootfs.digest
    }


def image_config(sources: ImageSources) -> dict[str, Any]:
    """The image config: user, entry point, environment, healthcheck and OCI labels."""
    created = oci.iso_time(sources.source_date_epoch)
    port = str(layout.IMAGE_PORT)
    return {
        "architecture": layout.TARGET_ARCH,
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{layout.IMAGE_USER_ID}:{layout.IMAGE_USER_ID}",
            "Entrypoint": [layout.IMAGE_PYTHON, "-m", "appliance"],
            "Cmd": ["serve"],
            "WorkingDir": layout.IMAGE_DATA_DIR,
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "LANG=C.UTF-8",
                "PYTHONPYCACHEPREFIX=/tmp/pycache",
                "PYTHONUNBUFFERED=1",
                f"APPLIANCE_DATA_DIR={layout.IMAGE_DATA_DIR}",
                f"APPLIANCE_SIGNERS={layout.IMAGE_PACK_SIGNERS}",
                "APPLIANCE_HOST=0.0.0.0",
                f"APPLIANCE_PORT={port}",
                f"{REVISION_ENV}={sources.revision}",
            ],
            "ExposedPorts": {f"{port}/tcp": {}},
            "Volumes": {layout.IMAGE_DATA_DIR: {}},
            "StopSignal": "SIGTERM",
            "Healthcheck": {
                "Test": ["CMD", layout.IMAGE_PYTHON, "-m", "appliance.healthcheck"],
                **{k: v * NANOSECONDS for k, v in HEALTHCHECK_SECONDS.items()},
                "Retries": HEALTHCHECK_RETRIES,
            },
            "Labels": image_labels(sources, created),
        },
        "history": [
            {"created": created, "created_by": f"build_bundle.py: {name} layer"}
            for name in ("base", "deps", "app")
        ],
    }


def build_server_image(
    sources: ImageSources, work: Path, out: Path, progress: Progress
) -> oci.ImageArchive:
    """Write the server image archive `out` from `sources`, using `work` for scratch files."""
    sde = sources.source_date_epoch
    work.mkdir(parents=True, exist_ok=True)
    progress(f"image: base layer from {sources.rootfs.origin}")
    base_entries = [*runtime_entries(sources.rootfs), *_system_entries()]
    base = oci.write_layer(base_entries, work / "base.tar", sde)
    progress(f"image: base layer {base.size / 1e6:.1f} MB, {base.files} files")
    deps_entries = _installed(server_wheels(sources.wheel_files), work / "deps", progress)
    deps = oci.write_layer(deps_entries, work / "deps.tar", sde)
    progress(f"image: deps layer {deps.size / 1e6:.1f} MB, {deps.files} files")
    app_entries = _installed([sources.project_wheel], work / "app", progress)
    app = oci.write_layer(app_entries, work / "app.tar", sde)
    progress(f"image: app layer {app.size / 1e6:.1f} MB, {app.files} files")
    tag = f"{layout.SERVER_IMAGE_NAME}:{sources.version}"
    archive = oci.write_image_archive(out, [base, deps, app], image_config(sources), tag, sde)
    progress(f"image: {tag} {archive.uncompressed_bytes / 1e6:.1f} MB, id {archive.image_id[:19]}")
    return archive
