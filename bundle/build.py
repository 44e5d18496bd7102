"""Build the signed bundle: each step in order, each in its own module, progress to a callback.

    1 lock       requirements/node.lock covers the project's dependencies and ansible-core
    2 wheels     the wheel cache for the target (bundle/wheels.py)
    3 frontend   the prebuilt dashboard is whole (bundle/frontend.py)
    4 debs       each target's .debs with Debian's signed metadata (bundle/debs.py)
    5 rootfs     the base root filesystem (bundle/rootfs.py)
    6 image      the server image archive (bundle/image.py, bundle/oci.py)
    7 engine     the engine loads and runs it, healthy (bundle/engine.py)
    8 files      install.sh, fleet.sh, ansible/ and the guides, when the tree has them
    9 sbom       CycloneDX SBOMs (bundle/sbom.py)
   10 manifest   manifest.json (bundle/manifest.py)
   11 sign       SHA256SUMS and SHA256SUMS.sig (bundle/checksums.py, bundle/sign.py)
   12 archive    appliance-<version>.tar (bundle/archive.py), then verified as a node would

Before step 1, a preflight refuses what would stop a later step (flags, the key, folders that
cannot be written, a missing tool, Python package or container engine), so a build never fails
on them minutes in. The bundle folder is assembled in a scratch folder beside the output and
removed afterwards; the archive appears whole or not at all.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.audit.distribution_names import normalise_name, requirement_name
from appliance.bundles.bundle_verify import BundleReport, verify_bundle
from appliance.errors import ApplianceError, ConfigError, KeyFileError
from appliance.fsio import atomic_write_bytes, scratch_dir, sha256_file
from appliance.progress import Progress
from appliance.trust.sshsig import AllowedSigner, SignerKey, load_private_key, public_key_of
from bundle import (
    archive,
    checksums,
    debs,
    engine,
    frontend,
    image,
    layout,
    manifest,
    rootfs,
    sbom,
    sign,
    tools,
    wheels,
)
from bundle.oci import ImageArchive

NODE_LOCK = Path("requirements/node.lock")
NODE_TOOLS = ("ansible-core",)  # what install.sh needs from the wheel cache besides the project
COPIED = (layout.INSTALL_SCRIPT, layout.FLEET_SCRIPT, layout.ANSIBLE_DIR)
BUNDLED_DOCS = (
    "docs/operator-guide.md",
    "docs/auditor-guide.md",
    "docs/admin-guide.md",
    "docs/examples/appliance-alerts.yml",  # the admin guide's example alerting rules
)
DEFAULT_MIN_UPGRADE_FROM = "0.1.0"
ZIP_LAST_EPOCH = 4354819198  # 2107-12-31T23:59:58Z, the last time a zip entry can hold
LICENSE = "Apache-2.0"


class BuildFault(ApplianceError):
    """The build machine failed under a step (a full disk, an I/O error), not the build's inputs."""

    exit_code = 4


@dataclass(frozen=True)
class BuildOptions:
    version: str
    key_file: Path
    out_dir: Path
    source_root: Path
    cache_dir: Path
    source_date_epoch: int
    revision: str
    targets: tuple[str, ...] = tuple(t.name for t in layout.NODE_TARGETS)
    base_rootfs: Path | None = None
    min_upgrade_from: str = DEFAULT_MIN_UPGRADE_FROM
    engine_check: bool = True
    rebuild_frontend: bool = False
    refresh_rootfs: bool = False
    engines: tuple[str, ...] = tuple(layout.ENGINE_PACKAGES)
    refresh_debian: bool = False
    debian_mirror: str = debs.DEFAULT_MIRROR
    debian_keyring: Path = Path(layout.DEBIAN_KEYRING)

    def debian(self) -> debs.DebianOptions:
        """What the debs step reads its inputs from."""
        return debs.DebianOptions(
            self.cache_dir, self.debian_mirror, self.debian_keyring, self.refresh_debian
        )

    def node_targets(self) -> tuple[layout.NodeTarget, ...]:
        """The selected targets, in NODE_TARGETS order."""
        return tuple(t for t in layout.NODE_TARGETS if t.name in self.targets)


@dataclass
class BuildResult:
    archive: Path
    sha256: str
    size: int
    image: ImageArchive
    report: BundleReport
    step_seconds: dict[str, float] = field(default_factory=dict)
    debs: list[debs.TargetDebs] = field(default_factory=list)


def _git(root: Path, *args: str) -> str | None:
    """What `git ARGS` says in `root` (stripped), or None outside a checkout or without git."""
    output = tools.probe(["git", *args], cwd=root)
    return None if output is None else output.strip()


def source_revision(root: Path) -> str:
    """The git commit of `root`, with '-dirty' when the tree has uncommitted changes."""
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if dirty else head


def default_source_date_epoch(root: Path) -> int:
    """The time of the last commit: the same for every build of the same commit."""
    stamp = _git(root, "log", "-1", "--format=%ct")
    if not stamp:
        msg = "SOURCE_DATE_EPOCH is not set and the source tree is not a git checkout; set it"
        raise ConfigError(msg)
    return int(stamp)


def check_options(options: BuildOptions) -> None:
    if not layout.VERSION_PATTERN.fullmatch(options.version):
        msg = f"--version {options.version!r} must match {layout.VERSION_PATTERN.pattern}"
        raise ConfigError(msg)
    if not layout.VERSION_PATTERN.fullmatch(options.min_upgrade_from):
        msg = f"--min-upgrade-from {options.min_upgrade_from!r} is not a version"
        raise ConfigError(msg)
    known = [t.name for t in layout.NODE_TARGETS]
    unknown = [name for name in options.targets if name not in known]
    if unknown or not options.targets:
        msg = f"--targets {','.join(options.targets)}: choose from {', '.join(known)}"
        raise ConfigError(msg)
    debs.selected_engines(options.engines)
    debs.check_mirror(options.debian_mirror)
    if options.source_date_epoch < 315532800:
        msg = f"SOURCE_DATE_EPOCH {options.source_date_epoch} is before 1980 (zip and tar times need later)"
        raise ConfigError(msg)
    if options.source_date_epoch > ZIP_LAST_EPOCH:
        msg = f"SOURCE_DATE_EPOCH {options.source_date_epoch} is after 2107 (zip times end there)"
        raise ConfigError(msg)
    if not (options.source_root / NODE_LOCK).is_file():
        msg = f"{options.source_root / NODE_LOCK} is missing; see docs/building.md to make it"
        raise ConfigError(msg)


def _check_writable(folder: Path, flag: str) -> None:
    """ConfigError unless `folder` exists or can be made, and takes a new file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        msg = (
            f"{flag} {folder}: cannot write there ({exc.strerror or exc}); choose a writable folder"
        )
        raise ConfigError(msg) from exc


def preflight(options: BuildOptions, progress: Progress) -> SignerKey:
    """Refuse now what would stop a later step; returns the signing key's public half."""
    check_options(options)
    try:
        private_key = load_private_key(options.key_file)
    except KeyFileError as exc:
        msg = f"--key: {exc}; make one with `mlws keygen` or `ssh-keygen -t ed25519 -N ''`"
        raise KeyFileError(msg) from exc
    signer_key = public_key_of(private_key, "bundle-signer")
    labels = image.project_labels(options.source_root)
    _check_writable(options.out_dir, "--out")
    _check_writable(options.cache_dir, "--cache-dir")
    if options.rebuild_frontend:
        frontend.check_can_rebuild()
    if options.base_rootfs is not None:
        rootfs.check_given(options.base_rootfs)
    else:
        rootfs.check_can_make(options.cache_dir, refresh=options.refresh_rootfs)
    debs.check_can_build(options.node_targets(), options.debian())
    found = engine.reachable_engine() if options.engine_check else "skipped (--skip-engine-check)"
    unset = [key for key in image.PROJECT_LABELS if key not in labels]
    if unset:
        progress(
            f"preflight: image labels {', '.join(unset)} not set ([{image.PROJECT_LABELS_TABLE}] in pyproject.toml)"
        )
    progress(f"preflight: signing key {signer_key.fingerprint}, engine {found}")
    return signer_key


def check_lock(root: Path) -> list[wheels.Pinned]:
    """The node lock must pin every project dependency and what install.sh needs."""
    pinned = wheels.read_lock(root / NODE_LOCK)
    names = {pin.key for pin in pinned}
    _, _, dependencies, _, _ = wheels.project_metadata(root)
    wanted = [normalise_name(name) for dep in dependencies if (name := requirement_name(dep))]
    missing = [name for name in [*wanted, *NODE_TOOLS] if name not in names]
    if missing:
        msg = f"{NODE_LOCK} does not pin {', '.join(missing)}; regenerate it (docs/building.md)"
        raise ConfigError(msg)
    return pinned


def _copy_files(root: Path, bundle_root: Path, progress: Progress) -> list[str]:
    copied = []
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(
                source,
                bundle_root / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.retry", ".ansible*"),
            )
            copied.append(f"{name}/")
        elif source.is_file():
            shutil.copy2(source, bundle_root / name)
            copied.append(name)
    for doc in BUNDLED_DOCS:
        if (root / doc).is_file():
            # Where it is under docs/ here: the guides' links between them hold in the bundle.
            target = bundle_root / layout.DOCS_DIR / Path(doc).relative_to("docs")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / doc, target)
            copied.append(doc)
    progress(f"files: {', '.join(copied) or 'none'}")
    return copied


class _Steps:
    """Numbered steps with their durations."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.number = 0
        self.seconds: dict[str, float] = {}
        self._name = ""
        self._started = 0.0

    def next(self, name: str) -> None:
        self._close()
        self.number += 1
        self._name = name
        self._started = time.monotonic()
        self.progress(f"[{self.number}/{self.total}] {name}")

    def _close(self) -> None:
        if self._name:
            self.seconds[self._name] = time.monotonic() - self._started

    @property
    def current(self) -> str:
        return self._name or "setup"

    def done(self) -> dict[str, float]:
        self._close()
        self._name = ""
        return self.seconds


def build_bundle(options: BuildOptions, progress: Progress) -> BuildResult:
    """Build `out_dir/appliance-<version>.tar` from `options`.

    ConfigError (or KeyFileError) says what in the inputs stopped it, BuildFault what the
    machine failed at; either way the scratch folder is gone and no archive is left half-written.
    """
    signer_key = preflight(options, progress)
    steps = _Steps(progress, 12)
    try:
        return _run_steps(options, signer_key, steps)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        reason = " ".join(str(exc.strerror or exc).split())  # some carry a server's newlines
        msg = f"{steps.current} step: {reason}{where}; free space or fix the disk, then build again"
        raise BuildFault(msg) from exc


def _run_steps(options: BuildOptions, signer_key: SignerKey, steps: _Steps) -> BuildResult:  # noqa: PLR0915 (the steps, in order, in one place)
    progress = steps.progress
    root, sde, version = options.source_root, options.source_date_epoch, options.version
    with scratch_dir(options.out_dir, f".appliance-{version}.build-") as scratch:
        bundle_root = scratch / layout.top_dir(version)
        work = scratch / "work"
        (bundle_root / layout.IMAGES_DIR).mkdir(parents=True)
        (bundle_root / layout.SBOM_DIR).mkdir()

        steps.next("lock")
        pinned = check_lock(root)
        progress(f"lock: {len(pinned)} pinned distributions in {NODE_LOCK}")

        steps.next("wheels")
        wheel_dir = bundle_root / layout.WHEELS_DIR
        pythons = [layout.node_target(name).python for name in options.targets]
        by_python = wheels.download(
            root / NODE_LOCK, wheel_dir, options.cache_dir, pythons, progress
        )
        third_party = sorted({path for paths in by_python.values() for path in paths})
        image_wheels_in = (
            by_python.get(layout.IMAGE_PYTHON_VERSION)
            or wheels.download(
                root / NODE_LOCK,
                work / "image-wheels",
                options.cache_dir,
                [layout.IMAGE_PYTHON_VERSION],
                progress,
            )[layout.IMAGE_PYTHON_VERSION]
        )
        project_wheel = wheels.build_project_wheel(root, wheel_dir, sde)
        wheels.write_wheel_lock(wheel_dir / layout.WHEELS_LOCK, pinned, project_wheel)
        wheels.write_bootstrap_lock(wheel_dir / layout.BOOTSTRAP_LOCK, pinned, by_python)
        all_wheels = [*third_party, project_wheel]
        progress(
            f"wheels: {len(all_wheels)} wheels, {sum(p.stat().st_size for p in all_wheels) / 1e6:.1f} MB"
        )

        steps.next("frontend")
        if options.rebuild_frontend:
            frontend.rebuild(root, progress)
        frontend.check_dist(root, progress)

        steps.next("debs")
        engines = debs.selected_engines(options.engines)
        found_debs = debs.collect(
            options.node_targets(), engines, options.debian(), bundle_root, progress
        )

        steps.next("rootfs")
        if options.base_rootfs is not None:
            base = rootfs.given_rootfs(options.base_rootfs)
        else:
            base = rootfs.debian_rootfs(options.cache_dir, progress, refresh=options.refresh_rootfs)
        progress(f"rootfs: {base.origin}, {len(base.packages)} Debian packages")

        steps.next("image")
        sources = image.ImageSources(
            base,
            tuple(image_wheels_in),
            project_wheel,
            version,
            options.revision,
            sde,
            LICENSE,
            image.project_labels(root),
        )
        server = image.build_server_image(
            sources, work / "image", bundle_root / layout.SERVER_IMAGE_FILE, progress
        )

        steps.next("engine")
        if options.engine_check:
            engine.check_image(server, progress)
        else:
            progress("engine: skipped (--skip-engine-check)")

        steps.next("files")
        copied = _copy_files(root, bundle_root, progress)

        steps.next("sbom")
        image_wheels = [*image.server_wheels(image_wheels_in), project_wheel]
        sbom.write(
            bundle_root / layout.SBOM_WHEELS, sbom.wheels_sbom(all_wheels, pythons, version, sde)
        )
        sbom.write(
            bundle_root / layout.SBOM_SERVER_IMAGE,
            sbom.image_sbom(
                layout.SERVER_IMAGE_NAME, version, server.image_id, base, image_wheels, sde
            ),
        )
        debs_sboms = [layout.debs_sbom(found.target) for found in found_debs]
        for found, name in zip(found_debs, debs_sboms, strict=True):
            sbom.write(bundle_root / name, sbom.debs_sbom(found, version, sde))
        progress(f"sbom: {', '.join([layout.SBOM_WHEELS, layout.SBOM_SERVER_IMAGE, *debs_sboms])}")

        steps.next("manifest")
        components = {
            "wheels": len(all_wheels),
            "debian_packages": len(base.packages),
            "base_rootfs": base.origin,
            "frontend": "server/frontend/dist (in the project wheel)",
            "files": copied,
            "debs": {
                found.target.name: {
                    "debs": len(found.debs),
                    "standard_status_sha256": found.standard_status_sha256,
                }
                for found in found_debs
            },
        }
        document = manifest.build_manifest(
            version=version,
            min_upgrade_from=options.min_upgrade_from,
            revision=options.revision,
            source_date_epoch=sde,
            images=[server],
            bundle_root=bundle_root,
            components=components,
            targets=[found.manifest_entry() for found in found_debs],
        )
        manifest.write_manifest(bundle_root / layout.MANIFEST, document)

        steps.next("sign")
        atomic_write_bytes(
            bundle_root / layout.SIGNER_KEY, f"{signer_key.openssh_line()}\n".encode()
        )
        sums = checksums.write_checksums(bundle_root)
        atomic_write_bytes(bundle_root / layout.CHECKSUMS, sums)
        atomic_write_bytes(
            bundle_root / layout.CHECKSUMS_SIG, sign.sign_checksums(sums, options.key_file)
        )
        listed = len(sums.splitlines())
        progress(f"sign: {listed} files listed, signed by {signer_key.fingerprint}")

        steps.next("archive")
        out = options.out_dir / layout.archive_name(version)
        archive.write_archive(bundle_root, out, sde)
    trusted = AllowedSigner(("bundle-signer",), signer_key, (layout.SIGNATURE_NAMESPACE,))
    report = verify_bundle(out, [trusted], debian_keyring=options.debian_keyring)
    digest = sha256_file(out)
    progress(f"archive: {out} {out.stat().st_size / 1e6:.1f} MB sha256 {digest}")
    return BuildResult(out, digest, out.stat().st_size, server, report, steps.done(), found_debs)
