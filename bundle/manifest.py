"""manifest.json: what the bundle is, where it came from, and its images (see bundle/layout.py).

appliance/bundles/bundle_verify.py checks the fields the installer relies on (format, version,
min_upgrade_from, images); the rest records the build for people and the audit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from appliance.fsio import atomic_write_bytes
from bundle import layout
from bundle.oci import ImageArchive, iso_time


def image_entry(archive: ImageArchive, bundle_root: Path) -> dict[str, Any]:
    return {
        "file": archive.path.relative_to(bundle_root).as_posix(),
        "sha256": archive.sha256,
        "size": archive.size,
        "name": archive.repo_tag,
        "image_id": archive.image_id,
        "uncompressed_bytes": archive.uncompressed_bytes,
        "layers": [{"diff_id": f"sha256:{x.digest}", "size": x.size} for x in archive.layers],
    }


def build_manifest(
    *,
    version: str,
    min_upgrade_from: str,
    revision: str,
    source_date_epoch: int,
    images: list[ImageArchive],
    bundle_root: Path,
    components: dict[str, Any],
    targets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The manifest; `targets` are the node targets' entries (bundle/debs.py, docs/formats.md)."""
    return {
        "format": layout.MANIFEST_FORMAT,
        "format_version": layout.MANIFEST_VERSION,
        "version": version,
        "min_upgrade_from": min_upgrade_from,
        "build": {
            "revision": revision,
            "source_date_epoch": source_date_epoch,
            "created": iso_time(source_date_epoch),
            "builder_python": ".".join(map(str, sys.version_info[:2])),
        },
        "image_base": {
            "os": f"debian ({layout.IMAGE_DEBIAN_SUITE})",
            "arch": layout.TARGET_ARCH,
            "python": layout.IMAGE_PYTHON_VERSION,
        },
        "images": [image_entry(image, bundle_root) for image in images],
        "targets": targets or [],
        "components": components,
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
