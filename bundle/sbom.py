"""CycloneDX 1.5 JSON SBOMs: one for the wheel cache, one for the server image, one per node
target for the .debs in debs/<target>/.

Each component has a package URL (pkg:pypi/..., pkg:deb/debian/...) and, where the build knows
it, the SHA-256 of the file it came from (the wheel, or the .deb mmdebstrap unpacked). Serial
numbers and timestamps derive from the content and SOURCE_DATE_EPOCH, so SBOMs are reproducible.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Iterable
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from appliance.fsio import atomic_write_bytes, sha256_file
from bundle import layout
from bundle.debs import TargetDebs
from bundle.oci import iso_time
from bundle.rootfs import DebianPackage

SPEC_VERSION = "1.5"
DEBIAN_DISTRO = "debian-12"


def wheel_metadata(path: Path) -> dict[str, str]:
    """Name, Version and licence fields from a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(zf.read(name).decode("utf-8", "replace"))
    license_text = headers.get("License-Expression") or headers.get("License") or ""
    classifiers = [
        c.split("::")[-1].strip()
        for c in headers.get_all("Classifier") or []
        if c.startswith("License ::")
    ]
    return {
        "name": headers.get("Name", ""),
        "version": headers.get("Version", ""),
        "license": license_text.splitlines()[0][:200]
        if license_text.strip()
        else ", ".join(classifiers),
    }


def python_component(meta: dict[str, str], sha256: str | None) -> dict[str, Any]:
    purl = f"pkg:pypi/{meta['name'].lower().replace('_', '-')}@{meta['version']}"
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": purl,
        "name": meta["name"],
        "version": meta["version"],
        "purl": purl,
    }
    if sha256:
        component["hashes"] = [{"alg": "SHA-256", "content": sha256}]
    if meta.get("license"):
        component["licenses"] = [{"license": {"name": meta["license"]}}]
    return component


def debian_component(package: DebianPackage, distro: str = DEBIAN_DISTRO) -> dict[str, Any]:
    purl = f"pkg:deb/debian/{package.name}@{package.version}?arch={package.arch}&distro={distro}"
    return {
        "type": "library",
        "bom-ref": purl,
        "name": package.name,
        "version": package.version,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": package.sha256}],
    }


def document(
    subject: dict[str, Any], components: Iterable[dict[str, Any]], source_date_epoch: int
) -> dict[str, Any]:
    """A CycloneDX document about `subject` listing `components`, sorted by bom-ref."""
    ordered = sorted(components, key=lambda c: c["bom-ref"])
    body = json.dumps([subject, ordered], sort_keys=True)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, body)}",
        "version": 1,
        "metadata": {
            "timestamp": iso_time(source_date_epoch),
            "tools": {"components": [{"type": "application", "name": "build_bundle.py"}]},
            "component": subject,
        },
        "components": ordered,
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def wheels_sbom(
    wheel_files: Iterable[Path], version: str, source_date_epoch: int
) -> dict[str, Any]:
    """The wheel cache: one component per wheel, with the wheel's SHA-256."""
    components = [python_component(wheel_metadata(p), sha256_file(p)) for p in wheel_files]
    subject = {
        "type": "application",
        "bom-ref": f"appliance-wheels@{version}",
        "name": "appliance wheel cache",
        "version": version,
    }
    return document(subject, components, source_date_epoch)


def image_sbom(
    image_name: str,
    version: str,
    image_id: str,
    debian: Iterable[DebianPackage],
    wheel_files: Iterable[Path],
    source_date_epoch: int,
) -> dict[str, Any]:
    """The server image: its Debian packages and its Python distributions."""
    components = [debian_component(p) for p in debian]
    components += [python_component(wheel_metadata(p), sha256_file(p)) for p in wheel_files]
    subject = {
        "type": "container",
        "bom-ref": f"{image_name}@{version}",
        "name": image_name,
        "version": version,
        "hashes": [{"alg": "SHA-256", "content": image_id.removeprefix("sha256:")}],
        "properties": [
            {"name": "appliance:image-file", "value": layout.SERVER_IMAGE_FILE},
            {
                "name": "appliance:pruned",
                "value": "see docs/building.md, 'What the image leaves out'",
            },
        ],
    }
    return document(subject, components, source_date_epoch)


def debs_sbom(found: TargetDebs, version: str, source_date_epoch: int) -> dict[str, Any]:
    """A target's debs/ folder: one component per .deb, with its SHA-256 and where it lies."""
    target = found.target
    engines = {
        deb.file: [engine for engine, debs in found.closure.items() if deb in debs]
        for deb in found.debs
    }
    components = []
    for deb in found.debs:
        package = DebianPackage(deb.name, deb.version, deb.architecture, deb.sha256)
        component = debian_component(package, f"debian-{target.os_version_id}")
        component["properties"] = [
            {"name": "appliance:file", "value": f"{layout.debs_dir(target)}/{deb.file}"},
            {"name": "appliance:engines", "value": ",".join(engines[deb.file])},
        ]
        components.append(component)
    subject = {
        "type": "application",
        "bom-ref": f"appliance-debs-{target.name}@{version}",
        "name": f"appliance Debian packages for {target.name} ({target.codename})",
        "version": version,
        "properties": [
            {"name": "appliance:debs-dir", "value": layout.debs_dir(target)},
            *(
                {
                    "name": f"appliance:source:{s.suite.suite}",
                    "value": f"{s.release.date}, InRelease sha256 {s.inrelease_sha256}",
                }
                for s in found.sources
            ),
        ],
    }
    return document(subject, components, source_date_epoch)
