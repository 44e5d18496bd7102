"""The auditor's check of a built install bundle: image sizes and contents, and no ML anywhere in it.

For each image in `images/` (docker-archive, see bundle/oci.py): its file size, uncompressed size
(the sum of its layer tars), compressed size (the sum of its layers gzipped at level 6 by zlib, as
a registry carries them; within a fraction of a percent of `gzip -6`), its layers, its largest
files and the Python distributions inside it. Then the no-ML rule (docs/auditor-guide.md) on
what the bundle ships, each breach a finding:

    size          an image larger than the limit (uncompressed, MB = 10^6 bytes)
    distribution  an ML distribution (*.dist-info, *.egg-info) in an image
    module        an ML package or module in a site-packages folder, with or without metadata
    gpu           a CUDA/GPU library, site-packages/nvidia/, or /usr/local/cuda*
    route         a route of the image's server app that trains, infers or exposes a model,
                  or a server app that cannot be built (so its routes cannot be checked)
    import        an ML import in the shipped code (the image's app layer, the project wheel)
    wheel         an ML distribution in the wheel cache
    dependency    an ML distribution pinned in wheels/requirements.lock

The bundle is read as it is (a `.tar` or its unpacked folder), by the reader `appliance verify`
uses (bundle_reader.py): nothing is verified here, which is verify's job, so audit a bundle
after verifying it. Images are read in place, layer by layer (image_layers.py); only the
image's site-packages are copied to a temporary folder, as its layers stack them, to build its
server app in a child Python (its `create_app`, never served) and list the routes.

Whiteouts are not applied when looking for ML: a library deleted by an upper layer still travels
in the image, so it is still reported.
"""

from __future__ import annotations

import heapq
import os
import shutil
import subprocess
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit.audit_source import (
    Finding,
    Kind,
    audit_imports,
    audit_routes,
    is_ml_distribution,
    locked_requirements,
    served_routes,
)
from appliance.audit.compliance import ML_MODULES
from appliance.audit.distribution_names import requirement_name
from appliance.bundles import bundle_layout as layout
from appliance.bundles.bundle_checksums import check_relative_path
from appliance.bundles.bundle_reader import Blob, Bundle, read_bundle, read_small
from appliance.bundles.image_layers import (
    Image,
    Layer,
    LayerMember,
    SiteTree,
    image_layers,
    layer_members,
)
from appliance.errors import BundleRejected, ConfigError
from appliance.fsio import CHUNK_BYTES
from appliance.progress import Progress, quiet

MB = 1_000_000
DEFAULT_MAX_IMAGE_MB = 600
DEFAULT_LARGEST_FILES = 10
GZIP_LEVEL = 6
GZIP_WBITS = 31  # zlib's gzip wrapper: a 10-byte header and an 8-byte trailer, as `gzip -n`
# Read whole into memory: METADATA, the wheel lock, shipped sources.
MAX_SMALL_FILE_BYTES = 8 << 20

SITE_FOLDERS = ("site-packages", "dist-packages")
DIST_INFO_SUFFIXES = (".dist-info", ".egg-info")
# Shared libraries of the CUDA toolkit, cuDNN, NCCL, the NVIDIA driver and CUDA builds of torch.
GPU_LIBRARY_PREFIXES = (
    "libcuda",
    "libcublas",
    "libcudnn",
    "libcufft",
    "libcufile",
    "libcupti",
    "libcurand",
    "libcusolver",
    "libcusparse",
    "libnccl",
    "libnvjitlink",
    "libnvrtc",
    "libnvToolsExt",
    "libnvidia-",
    "libtorch_cuda",
    "libc10_cuda",
)
GPU_SITE_PACKAGES = ("nvidia",)  # the nvidia-*-cu12 wheels install here
CUDA_ROOT = ("usr", "local", "cuda")  # /usr/local/cuda, /usr/local/cuda-12.4, ...


@dataclass(frozen=True)
class Distribution:
    """A Python distribution found in an image, by its metadata folder."""

    name: str
    version: str
    where: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "where": self.where}


@dataclass(frozen=True)
class LargeFile:
    """One of an image's largest files, and the layer that carries it."""

    path: str
    size: int
    layer: str

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "layer": self.layer}


@dataclass(frozen=True)
class LayerSize:
    """One layer of an image: its diff_id, tar size, gzip size and regular files."""

    diff_id: str
    size: int
    compressed_bytes: int
    files: int

    def as_json(self) -> dict[str, Any]:
        return {
            "diff_id": self.diff_id,
            "size": self.size,
            "compressed_bytes": self.compressed_bytes,
            "files": self.files,
        }


@dataclass(frozen=True)
class ImageAudit:
    """What one image holds; `routes` is None when it carries no server app."""

    file: str
    name: str
    file_bytes: int
    layers: tuple[LayerSize, ...]
    largest_files: tuple[LargeFile, ...]
    distributions: tuple[Distribution, ...]
    routes: tuple[str, ...] | None
    python_files: int

    @property
    def uncompressed_bytes(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def compressed_bytes(self) -> int:
        return sum(layer.compressed_bytes for layer in self.layers)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "name": self.name,
            "file_bytes": self.file_bytes,
            "uncompressed_bytes": self.uncompressed_bytes,
            "compressed_bytes": self.compressed_bytes,
            "layers": [layer.as_json() for layer in self.layers],
            "largest_files": [large.as_json() for large in self.largest_files],
            "distributions": [dist.as_json() for dist in self.distributions],
            "routes": None if self.routes is None else list(self.routes),
            "python_files_scanned": self.python_files,
        }


@dataclass(frozen=True)
class WheelCacheAudit:
    """What the wheel cache holds: its files, lock entries, and project sources scanned."""

    files: tuple[str, ...]
    lock_entries: int
    python_files: int

    def as_json(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "lock_entries": self.lock_entries,
            "python_files_scanned": self.python_files,
        }


@dataclass(frozen=True)
class BundleAudit:
    """The whole audit of a bundle: images, wheel cache, findings."""

    bundle: str
    version: str
    max_image_bytes: int
    images: tuple[ImageAudit, ...]
    wheels: WheelCacheAudit
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when nothing breaks the size limit or the no-ML rule."""
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        """The audit as a JSON object (what `appliance audit BUNDLE --json FILE` writes)."""
        return {
            "bundle": self.bundle,
            "version": self.version,
            "ok": self.ok,
            "max_image_bytes": self.max_image_bytes,
            "images": [image.as_json() for image in self.images],
            "wheels": self.wheels.as_json(),
            "findings": [finding.as_json() for finding in self.findings],
        }


# --- one image -------------------------------------------------------------------------------


def _gzip_size(blob: Blob, where: str) -> int:
    """The size of the blob gzipped at GZIP_LEVEL, streamed (zlib releases the GIL: runs in threads)."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    total = read = 0
    with blob.open() as stream:
        while chunk := stream.read(CHUNK_BYTES):
            read += len(chunk)
            total += len(compressor.compress(chunk))
    if read != blob.size:
        raise BundleRejected("truncated", f"{where} is truncated")
    return total + len(compressor.flush())


@dataclass
class _Contents:
    """What the walk over an image's layers has found so far."""

    image: str
    largest: int
    tree: SiteTree  # the image's site-packages, as its layers stack them
    files: list[int] = field(default_factory=list)
    heap: list[tuple[int, str, str]] = field(default_factory=list)
    distributions: dict[str, Distribution] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    flagged: set[tuple[Kind, str]] = field(default_factory=set)

    def finding(self, kind: Kind, path: str, detail: str) -> None:
        """Report `path` once per kind, and nothing below a path already reported for that kind."""
        if any(k == kind and (p == path or path.startswith(f"{p}/")) for k, p in self.flagged):
            return
        self.flagged.add((kind, path))
        self.findings.append(Finding(kind, f"{self.image}:{path}", detail))

    def keep_large(self, size: int, path: str, diff_id: str) -> None:
        item = (size, path, diff_id)
        if len(self.heap) < self.largest:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)


def _metadata_fields(data: bytes) -> dict[str, str]:
    """Name and Version from the header of a METADATA or PKG-INFO file."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    return fields


def _note_distribution(contents: _Contents, member: LayerMember) -> None:
    """Record the distribution a *.dist-info or *.egg-info path belongs to, reading its metadata."""
    parts = member.parts
    index = next(i for i, part in enumerate(parts) if part.endswith(DIST_INFO_SUFFIXES))
    folder = "/".join(parts[: index + 1])
    stem = parts[index].rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    known = contents.distributions.get(folder, Distribution(name, version.split("-")[0], folder))
    is_metadata = parts[index + 1 :] in (["METADATA"], ["PKG-INFO"]) or (
        len(parts) == index + 1 and parts[index].endswith(".egg-info")
    )
    if is_metadata and member.info.isreg() and member.info.size <= MAX_SMALL_FILE_BYTES:
        fields = _metadata_fields(member.read())
        known = Distribution(
            fields.get("Name", known.name), fields.get("Version", known.version), folder
        )
    contents.distributions[folder] = known


def _check_ml_and_gpu(contents: _Contents, parts: list[str]) -> None:
    """Findings for an ML package in site-packages and any CUDA/GPU library or folder."""
    site = next((i for i, part in enumerate(parts) if part in SITE_FOLDERS), None)
    if site is not None and site + 1 < len(parts):
        top = parts[site + 1]
        path = "/".join(parts[: site + 2])
        if top.split(".")[0] in ML_MODULES:
            contents.finding("module", path, f"ML library {top.split('.')[0]!r} is installed")
        elif top in GPU_SITE_PACKAGES:
            contents.finding("gpu", path, "CUDA runtime libraries (nvidia-* wheels) are installed")
    if len(parts) >= 3 and tuple(parts[:2]) == CUDA_ROOT[:2] and parts[2].startswith(CUDA_ROOT[2]):
        contents.finding("gpu", "/".join(parts[:3]), "a CUDA toolkit is installed")
    base = parts[-1]
    if base.startswith(GPU_LIBRARY_PREFIXES) and ".so" in base:
        contents.finding("gpu", "/".join(parts), f"CUDA/GPU library {base}")


def _walk_layer(contents: _Contents, number: int, layer: Layer) -> None:
    """One pass over a layer: files, largest files, distributions, ML and GPU, site-packages copy."""
    files = 0
    for member in layer_members(layer, f"{contents.image}: layer {layer.diff_id}"):
        if member.info.isreg():
            files += 1
            contents.keep_large(member.info.size, member.name, layer.diff_id)
        if any(part.endswith(DIST_INFO_SUFFIXES) for part in member.parts):
            _note_distribution(contents, member)
        _check_ml_and_gpu(contents, member.parts)
        contents.tree.take(member, number)
    contents.files.append(files)


def _shipped_code(tree: SiteTree) -> list[Path]:
    """Every .py file in site-packages put there by a layer that carries the node's packages."""
    project = tuple(f"{tree.folder}/{package}/" for package in layout.NODE_PACKAGES)
    app_layers = {n for path, n in tree.origin.items() if path.startswith(project)}
    return sorted(
        tree.root / path
        for path, n in tree.origin.items()
        if n in app_layers and path.endswith(".py")
    )


def _image_routes(file: str, site: Path) -> tuple[tuple[str, ...] | None, list[Finding]]:
    """The routes of the image's server app, if it carries one, and the ML ones among them."""
    if not (site / "server" / "app.py").is_file():
        return None, []
    try:
        routes = served_routes(site, isolated=True)
    except (ConfigError, subprocess.TimeoutExpired) as exc:
        detail = str(exc).replace(str(site), f"{file}:{layout.IMAGE_SITE_PACKAGES}")
        where = f"{file}:{layout.IMAGE_SITE_PACKAGES}/server/app.py"
        return (), [Finding("route", where, detail)]
    findings = [Finding("route", f"{file}:{f.where}", f.detail) for f in audit_routes(routes)]
    return tuple(routes), findings


@dataclass(frozen=True)
class _Limits:
    max_image_bytes: int
    largest: int


def _audit_image(
    file: str,
    file_bytes: int,
    image: Image,
    limits: _Limits,
    pool: ThreadPoolExecutor,
    work: Path,
    progress: Progress,
) -> tuple[ImageAudit, list[Finding]]:
    """Audit one image of the archive `file`: walk its layers while threads gzip them."""
    name, layers = image.name, image.layers
    label = name or file
    sizes = [pool.submit(_gzip_size, x.blob, f"{file}: {x.member}") for x in layers]
    root = Path(tempfile.mkdtemp(prefix="image-", dir=work))
    contents = _Contents(file, limits.largest, SiteTree(root, layout.IMAGE_SITE_PACKAGES))
    for index, layer in enumerate(layers):
        progress(f"{label}: layer {index + 1}/{len(layers)}, {layer.blob.size / MB:.1f} MB")
        _walk_layer(contents, index, layer)
    findings = contents.findings + [
        Finding("distribution", f"{file}:{d.where}", f"ML distribution {d.name} {d.version}")
        for d in contents.distributions.values()
        if is_ml_distribution(d.name)
    ]
    shipped = _shipped_code(contents.tree)
    findings += [
        Finding("import", f"{file}:{f.where}", f.detail) for f in audit_imports(root, shipped)
    ]
    progress(f"{label}: {len(shipped)} shipped Python files scanned; listing server routes")
    routes, route_findings = _image_routes(file, root / layout.IMAGE_SITE_PACKAGES)
    findings += route_findings
    shutil.rmtree(root)
    progress(f"{label}: waiting for the layers' gzip sizes")
    audit = ImageAudit(
        file=file,
        name=name,
        file_bytes=file_bytes,
        layers=tuple(
            LayerSize(x.diff_id, x.blob.size, size.result(), files)
            for x, size, files in zip(layers, sizes, contents.files, strict=True)
        ),
        largest_files=tuple(
            LargeFile(path, size, layer)
            for size, path, layer in sorted(contents.heap, key=lambda x: (-x[0], x[1]))
        ),
        distributions=tuple(
            sorted(contents.distributions.values(), key=lambda d: (d.name.lower(), d.where))
        ),
        routes=routes,
        python_files=len(shipped),
    )
    if audit.uncompressed_bytes > limits.max_image_bytes:
        detail = (
            f"{audit.uncompressed_bytes / MB:.1f} MB uncompressed, over the "
            f"{limits.max_image_bytes / MB:g} MB limit"
        )
        findings.insert(0, Finding("size", file, detail))
    return audit, findings


# --- the wheel cache -------------------------------------------------------------------------


def _distribution_of(file_name: str) -> str:
    """The distribution a wheel or sdist file name is for (the part before the first '-')."""
    return file_name.split("-", 1)[0]


def _project_sources(bundle: Bundle, name: str, work: Path) -> list[Path]:
    """Copy the .py files of the node's packages in one wheel to work/name/; return them."""
    try:
        with bundle.open(name) as stream, zipfile.ZipFile(stream) as wheel:
            infos = [
                info
                for info in wheel.infolist()
                if info.filename.endswith(".py")
                and info.filename.split("/")[0] in layout.NODE_PACKAGES
            ]
            paths = []
            for info in infos:
                try:
                    check_relative_path(info.filename)
                except ValueError as exc:
                    raise BundleRejected("unsafe-member", f"{name}: member {exc}") from exc
                if info.file_size > MAX_SMALL_FILE_BYTES:
                    msg = f"{name}: {info.filename} is over {MAX_SMALL_FILE_BYTES} bytes"
                    raise BundleRejected("too-large", msg)
                path = work / name / info.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(wheel.read(info))
                paths.append(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise BundleRejected("bad-wheel", f"{name} is not a readable wheel ({exc})") from exc
    return paths


def _audit_wheels(bundle: Bundle, work: Path) -> tuple[WheelCacheAudit, list[Finding]]:
    """The wheel cache: no ML distribution by file name or in the lock; no ML import in the project."""
    files = bundle.files
    prefix = f"{layout.WHEELS_DIR}/"
    lock_name = f"{prefix}{layout.WHEELS_LOCK}"
    cached = sorted(name for name in files if name.startswith(prefix) and name != lock_name)
    findings = [
        Finding("wheel", name, f"ML distribution {_distribution_of(name[len(prefix) :])!r}")
        for name in cached
        if is_ml_distribution(_distribution_of(name[len(prefix) :]))
    ]
    entries = 0
    if lock_name in files:
        lock = work / layout.WHEELS_LOCK
        lock.write_bytes(read_small(files[lock_name], MAX_SMALL_FILE_BYTES, lock_name))
        try:
            requirements = locked_requirements(lock)
        except UnicodeDecodeError as exc:
            raise BundleRejected("bad-lock", f"{lock_name} is not UTF-8 ({exc})") from exc
        entries = len(requirements)
        for requirement, line in requirements:
            name = requirement_name(requirement)
            if name and is_ml_distribution(name):
                detail = f"ML distribution {requirement!r} pinned"
                findings.append(Finding("dependency", f"{lock_name}:{line}", detail))
    sources = [
        path
        for name in cached
        if name.endswith(".whl")
        for path in _project_sources(bundle, name, work)
    ]
    findings += [Finding("import", f.where, f.detail) for f in audit_imports(work, sources)]
    return WheelCacheAudit(tuple(cached), entries, len(sources)), findings


def audit_bundle(
    path: Path,
    *,
    max_image_mb: float = DEFAULT_MAX_IMAGE_MB,
    largest: int = DEFAULT_LARGEST_FILES,
    progress: Progress = quiet,
) -> BundleAudit:
    """Audit the bundle archive or unpacked folder at `path` (see the module docstring).

    Raises BundleRejected when the bundle or one of its images cannot be read safely (not a
    tar, truncated, unsafe member, no image manifest), ConfigError when `path` cannot be read.
    """
    bundle = read_bundle(path)
    version, files = bundle.version, bundle.files
    limits = _Limits(round(max_image_mb * MB), largest)
    images = sorted(
        name for name in files if name.startswith(f"{layout.IMAGES_DIR}/") and name.endswith(".tar")
    )
    progress(f"appliance {version}: {len(images)} image(s), {len(files)} files")
    audits: list[ImageAudit] = []
    findings: list[Finding] = []
    with (
        tempfile.TemporaryDirectory(prefix="appliance-audit-") as tmp,
        ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool,
    ):
        work = Path(tmp)
        (work / "images").mkdir()
        for name in images:
            for image in image_layers(name, files[name]):
                audit, image_findings = _audit_image(
                    name, files[name].size, image, limits, pool, work / "images", progress
                )
                audits.append(audit)
                findings += image_findings
        wheels, wheel_findings = _audit_wheels(bundle, work)
        findings += wheel_findings
        progress(f"wheel cache: {len(wheels.files)} files, {wheels.python_files} project sources")
    return BundleAudit(
        str(path), version, limits.max_image_bytes, tuple(audits), wheels, tuple(findings)
    )


# --- the table `appliance audit BUNDLE` prints -------------------------------------------------


def _mb(count: int) -> str:
    return f"{count / MB:.1f} MB"


def render_table(audit: BundleAudit) -> list[str]:
    """The audit as lines of a readable table: per image sizes, layers, largest files; findings."""
    lines = [f"bundle    {audit.bundle} (appliance {audit.version})"]
    for image in audit.images:
        lines += [
            "",
            f"image     {image.file}  {image.name}",
            f"  size    {_mb(image.uncompressed_bytes)} uncompressed, "
            f"{_mb(image.compressed_bytes)} gzip -{GZIP_LEVEL}, file {_mb(image.file_bytes)} "
            f"(limit {_mb(audit.max_image_bytes)})",
            f"  {'LAYER':<19} {'SIZE':>10} {'GZIP':>10} {'FILES':>7}",
        ]
        lines += [
            f"  {x.diff_id[:19]:<19} {_mb(x.size):>10} {_mb(x.compressed_bytes):>10} {x.files:>7}"
            for x in image.layers
        ]
        lines.append(f"  {'LARGEST FILES':<19} {'SIZE':>10}  PATH")
        lines += [f"  {x.layer[:19]:<19} {_mb(x.size):>10}  {x.path}" for x in image.largest_files]
        names = ", ".join(f"{d.name} {d.version}" for d in image.distributions)
        lines.append(f"  python distributions: {len(image.distributions)} ({names})")
        routes = "no server app" if image.routes is None else f"{len(image.routes)} checked"
        lines.append(f"  routes: {routes}; shipped Python files scanned: {image.python_files}")
    wheels = audit.wheels
    lines += [
        "",
        f"wheels    {len(wheels.files)} files, {wheels.lock_entries} lock entries, "
        f"{wheels.python_files} project Python files scanned",
        "",
    ]
    if audit.ok:
        lines.append("findings  none: within the size limit, no ML, no GPU libraries")
    else:
        lines.append(f"findings  {len(audit.findings)}")
        lines += [f"  {f.kind:<12} {f.where}: {f.detail}" for f in audit.findings]
    return lines
