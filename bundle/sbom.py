"""CycloneDX 1.6 JSON SBOMs: one for the wheel cache, one for the server image, one per node
target for the .debs in debs/<target>/.

They are made with cyclonedx-python-lib, CycloneDX's own Python library, rather than by hand: its
model puts a licence where the specification wants it (a plain SPDX id in `license.id`, an SPDX
expression in `expression`, anything else in `license.name`), packageurl-python encodes the
package URLs, and every document is checked against the official JSON schema the library ships
before it is written, so a build never writes an SBOM that auditors' tools would refuse. It runs
on the builder only: the node never reads an SBOM (nothing under appliance/ does).

Each component has a package URL (pkg:pypi/... with the wheel's file name, since one release can
be two wheels for two Pythons; pkg:deb/debian/...), the SHA-256 of the file it came from, and the
`dependencies` graph says what needs what: each wheel requires the wheels its Requires-Dist name
on the Python it is for, each of the image's Debian packages the packages its Pre-Depends and
Depends name, and the document's subject depends on the components nothing else needs. What is
not known stays out of the graph, as CycloneDX reads it: the relations of a given base rootfs
whose package list lacks them, and those of a target's .debs, which depend on the standard
installation that no SBOM here lists. Serial numbers and timestamps derive from the content and
SOURCE_DATE_EPOCH, and keys are sorted, so SBOMs are reproducible.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import HeaderParser
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.contrib.this.builders import this_component
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License, LicenseAcknowledgement
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import parse_wheel_filename

from appliance.audit.distribution_names import normalise_name
from appliance.errors import ConfigError
from appliance.fsio import atomic_write_bytes, sha256_file
from bundle import layout
from bundle.debs import TargetDebs
from bundle.rootfs import BaseRootfs, DebianPackage

if TYPE_CHECKING:
    from cyclonedx.validation.json import JsonStrictValidator

SCHEMA_VERSION = SchemaVersion.V1_6
SPEC_VERSION = SCHEMA_VERSION.to_version()
DEBIAN_DISTRO = "debian-12"
BUILDER = "build_bundle.py"
MAX_LICENSE_NAME = 200

# The platform every node target is (x86_64 Linux, CPython), for a Requires-Dist's markers.
NODE_MARKERS = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}

_licenses = LicenseFactory()


@dataclass(frozen=True)
class Wheel:
    """What the SBOM says about one wheel file: read from its name and its METADATA."""

    path: Path
    name: str
    version: str
    licenses: tuple[License, ...]
    requires: tuple[Requirement, ...]
    sha256: str

    @property
    def purl(self) -> PackageURL:
        return PackageURL("pypi", None, self.name, self.version, {"file_name": self.path.name})

    def installs_on(self, python: str) -> bool:
        """Whether pip installs this wheel on CPython `python` (major.minor)."""
        wanted = tuple(int(part) for part in python.split("."))
        for tag in parse_wheel_filename(self.path.name)[3]:
            kind, digits = tag.interpreter[:2], tag.interpreter[2:]
            if not digits.isdigit() or kind not in ("py", "cp"):
                continue
            made_for = (int(digits[0]), int(digits[1:] or 0))
            if digits == "3" or made_for == wanted:
                return True
            if kind == "cp" and tag.abi == "abi3" and made_for <= wanted:
                return True
        return False


def declared_licenses(headers: Message, classifiers: Sequence[str]) -> tuple[License, ...]:
    """The licence a wheel declares: its PEP 639 License-Expression, else License, else classifiers.

    LicenseFactory makes an SPDX id a `license.id`, an SPDX expression an `expression`, and
    anything else (a classifier's words, a first line of licence text) a `license.name`.
    """
    declared = LicenseAcknowledgement.DECLARED
    for field in ("License-Expression", "License"):
        text = (headers.get(field) or "").strip()
        if text:
            first = text.splitlines()[0].strip()[:MAX_LICENSE_NAME]
            return (_licenses.make_from_string(first, license_acknowledgement=declared),)
    names = [c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")]
    return tuple(_licenses.make_with_name(n, acknowledgement=declared) for n in names)


def read_wheel(path: Path) -> Wheel:
    """The wheel's name, version, licence and Requires-Dist, and its file's SHA-256."""
    with zipfile.ZipFile(path) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(zf.read(member).decode("utf-8", "replace"))
    try:
        requires = tuple(Requirement(r) for r in headers.get_all("Requires-Dist") or [])
    except InvalidRequirement as exc:
        said = " ".join(str(exc).split())  # packaging points at the error on lines of its own
        msg = f"sbom: {path.name} has a Requires-Dist that does not parse ({said})"
        raise ConfigError(msg) from exc
    return Wheel(
        path,
        headers.get("Name", ""),
        headers.get("Version", ""),
        declared_licenses(headers, headers.get_all("Classifier") or []),
        requires,
        sha256_file(path),
    )


def _applies(requirement: Requirement, python: str, extras: Iterable[str]) -> bool:
    """Whether `requirement` holds on CPython `python` with any of `extras` (or none) asked for."""
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    environment = {**NODE_MARKERS, "python_version": python, "python_full_version": f"{python}.0"}
    return any(marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras))


def wheel_dependencies(wheels: Sequence[Wheel], pythons: Sequence[str]) -> dict[Path, set[Path]]:
    """For each wheel, the wheels among `wheels` it requires on a Python both install on.

    A requirement behind an extra counts when some wheel asks for that extra (`name[extra]`),
    hence the loop until no new extra is asked for.
    """
    by_name: dict[str, list[Wheel]] = {}
    for wheel in wheels:
        by_name.setdefault(normalise_name(wheel.name), []).append(wheel)
    extras: dict[Path, set[str]] = {w.path: set() for w in wheels}
    edges: dict[Path, set[Path]] = {w.path: set() for w in wheels}
    changed = True
    while changed:
        changed = False
        for parent in wheels:
            for python in (p for p in pythons if parent.installs_on(p)):
                for requirement in parent.requires:
                    if not _applies(requirement, python, extras[parent.path]):
                        continue
                    for child in by_name.get(normalise_name(requirement.name), []):
                        if not child.installs_on(python) or child.path == parent.path:
                            continue
                        edges[parent.path].add(child.path)
                        if not requirement.extras <= extras[child.path]:
                            extras[child.path] |= requirement.extras
                            changed = True
    return edges


def debian_dependencies(packages: Iterable[DebianPackage]) -> dict[str, set[str]]:
    """For each package whose relations are known, the packages among `packages` its Pre-Depends
    and Depends name (of alternatives `a | b`, the first one there; a virtual one, its provider)."""
    packages = list(packages)
    known = [(p.name, r) for p in packages if (r := p.relations) is not None]
    present = {p.name for p in packages}
    providers: dict[str, str] = {}
    for name, relations in known:
        for group in _relation_names(relations.provides):
            providers.setdefault(group[0], name)
    edges: dict[str, set[str]] = {}
    for name, relations in known:
        edges[name] = set()
        for alternatives in _relation_names(f"{relations.pre_depends},{relations.depends}"):
            there = [
                n if n in present else providers[n]
                for n in alternatives
                if n in present or n in providers
            ]
            if there and there[0] != name:
                edges[name].add(there[0])
    return edges


def _relation_names(field: str) -> list[list[str]]:
    """A Debian relation field's package names, one list per comma-separated alternative group
    (version constraints, architecture qualifiers like `:any` and restrictions dropped)."""
    groups = []
    for group in field.split(","):
        names = [alt.split("(")[0].split("[")[0].strip().split(":")[0] for alt in group.split("|")]
        if [n for n in names if n]:
            groups.append([n for n in names if n])
    return groups


def python_component(wheel: Wheel) -> Component:
    purl = wheel.purl
    return Component(
        type=ComponentType.LIBRARY,
        bom_ref=purl.to_string(),
        name=wheel.name,
        version=wheel.version,
        purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel.sha256)],
        licenses=wheel.licenses,
    )


def debian_component(
    package: DebianPackage, distro: str = DEBIAN_DISTRO, properties: Iterable[Property] = ()
) -> Component:
    purl = PackageURL(
        "deb", "debian", package.name, package.version, {"arch": package.arch, "distro": distro}
    )
    return Component(
        type=ComponentType.LIBRARY,
        bom_ref=purl.to_string(),
        name=package.name,
        version=package.version,
        purl=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)],
        properties=properties,
    )


@cache
def _schema() -> JsonStrictValidator:
    """The official CycloneDX schema's validator (jsonschema takes seconds to import: lazily)."""
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SCHEMA_VERSION)


def _content(bom: Bom, known: set[str]) -> dict[str, Any]:
    """The document as the library writes it, less the graph entries of components whose
    dependencies are not known: the library gives every component one, an empty one saying "no
    dependencies", while CycloneDX reads a component left out of the graph as "not known"."""
    doc: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["dependencies"] = [d for d in doc.get("dependencies", []) if d["ref"] in known]
    return doc


def _text(doc: dict[str, Any]) -> str:
    """Keys sorted: the library's own order may change between its versions."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _roots(refs: Sequence[str], edges: Mapping[str, Collection[str]]) -> list[str]:
    """What the subject depends on: the components nothing depends on, and one of each loop
    that only its own members reach (Debian's libc6 and libgcc-s1 need each other)."""
    needed = {t for targets in edges.values() for t in targets}
    roots = [r for r in refs if r not in needed]
    reached: set[str] = set()
    todo = list(roots)
    while True:
        while todo:
            ref = todo.pop()
            if ref not in reached:
                reached.add(ref)
                todo.extend(edges.get(ref, ()))
        unreached = [r for r in refs if r not in reached]
        if not unreached:
            return roots
        roots.append(unreached[0])
        todo.append(unreached[0])


def document(
    subject: Component,
    components: Sequence[Component],
    edges: Mapping[str, Collection[str]],
    source_date_epoch: int,
) -> dict[str, Any]:
    """A CycloneDX document about `subject` listing `components`; `edges` maps the bom-ref of each
    component whose dependencies are known to the bom-refs it depends on, and `subject` depends on
    every component nothing else does. The others stay out of the graph: not known.

    ConfigError if the result fails the official schema (a field this module fills wrongly).
    """
    by_ref = {str(c.bom_ref): c for c in components}
    if len(by_ref) != len(components):
        msg = f"sbom: two components of {subject.name} have one bom-ref"
        raise ConfigError(msg)
    bom = Bom(serial_number=uuid.UUID(int=0))
    bom.metadata.timestamp = datetime.fromtimestamp(source_date_epoch, UTC)
    bom.metadata.component = subject
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name=BUILDER))
    bom.metadata.tools.components.add(this_component())
    bom.components.update(components)
    for ref, targets in edges.items():
        bom.register_dependency(by_ref[ref], [by_ref[t] for t in sorted(set(targets))])
    bom.register_dependency(subject, [by_ref[ref] for ref in _roots(sorted(by_ref), edges)])
    known = {*edges, str(subject.bom_ref)}
    # The serial number is the UUID of the document written with the nil one: same content, same serial.
    bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, _text(_content(bom, known)))
    doc = _content(bom, known)
    error = _schema().validate_str(_text(doc))
    if error is not None:
        said = " ".join(str(error.data.message).split())
        msg = f"sbom: the SBOM of {subject.name} fails the CycloneDX {SPEC_VERSION} schema at {error.data.json_path}: {said}"
        raise ConfigError(msg)
    return doc


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _text(doc).encode())


def _python_part(
    wheel_files: Iterable[Path], pythons: Sequence[str]
) -> tuple[list[Component], dict[str, set[str]]]:
    """The wheels' components and their dependency edges, by bom-ref."""
    wheels = [read_wheel(path) for path in sorted(wheel_files)]
    refs = {w.path: w.purl.to_string() for w in wheels}
    edges = wheel_dependencies(wheels, pythons)
    return [python_component(w) for w in wheels], {
        refs[path]: {refs[child] for child in children} for path, children in edges.items()
    }


def wheels_sbom(
    wheel_files: Iterable[Path], pythons: Sequence[str], version: str, source_date_epoch: int
) -> dict[str, Any]:
    """The wheel cache: one component per wheel, with the wheel's SHA-256, for CPython `pythons`."""
    components, edges = _python_part(wheel_files, pythons)
    subject = Component(
        type=ComponentType.APPLICATION,
        bom_ref=f"appliance-wheels@{version}",
        name="appliance wheel cache",
        version=version,
        properties=[Property(name="appliance:pythons", value=",".join(pythons))],
    )
    return document(subject, components, edges, source_date_epoch)


def image_sbom(
    image_name: str,
    version: str,
    image_id: str,
    rootfs: BaseRootfs,
    wheel_files: Iterable[Path],
    source_date_epoch: int,
) -> dict[str, Any]:
    """The server image: its Debian packages and its Python distributions."""
    python, python_edges = _python_part(wheel_files, [layout.IMAGE_PYTHON_VERSION])
    debian = [debian_component(p) for p in rootfs.packages]
    subject = Component(
        type=ComponentType.CONTAINER,
        bom_ref=f"{image_name}@{version}",
        name=image_name,
        version=version,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_id.removeprefix("sha256:"))],
        properties=[
            Property(name="appliance:image-file", value=layout.SERVER_IMAGE_FILE),
            Property(name="appliance:base-rootfs", value=rootfs.digest),
            Property(
                name="appliance:pruned", value="see docs/building.md, 'What the image leaves out'"
            ),
        ],
    )
    refs = {p.name: str(c.bom_ref) for p, c in zip(rootfs.packages, debian, strict=True)}
    debian_edges = {
        refs[name]: {refs[n] for n in needs}
        for name, needs in debian_dependencies(rootfs.packages).items()
    }
    return document(
        subject, [*debian, *python], {**debian_edges, **python_edges}, source_date_epoch
    )


def debs_sbom(found: TargetDebs, version: str, source_date_epoch: int) -> dict[str, Any]:
    """A target's debs/ folder: one component per .deb, with its SHA-256 and where it lies."""
    target = found.target
    engines = {
        deb.file: [engine for engine, debs in found.closure.items() if deb in debs]
        for deb in found.debs
    }
    components = [
        debian_component(
            DebianPackage(deb.name, deb.version, deb.architecture, deb.sha256),
            f"debian-{target.os_version_id}",
            [
                Property(name="appliance:file", value=f"{layout.debs_dir(target)}/{deb.file}"),
                Property(name="appliance:engines", value=",".join(engines[deb.file])),
            ],
        )
        for deb in found.debs
    ]
    subject = Component(
        type=ComponentType.APPLICATION,
        bom_ref=f"appliance-debs-{target.name}@{version}",
        name=f"appliance Debian packages for {target.name} ({target.codename})",
        version=version,
        properties=[
            Property(name="appliance:debs-dir", value=layout.debs_dir(target)),
            *(
                Property(
                    name=f"appliance:source:{s.suite.suite}",
                    value=f"{s.release.date}, InRelease sha256 {s.inrelease_sha256}",
                )
                for s in found.sources
            ),
        ],
    )
    return document(subject, components, {}, source_date_epoch)
