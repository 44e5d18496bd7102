"""The install bundle format as constants: the builder writes it, the node's verifier, auditor and
installer read it, all from here (the builder's own choices are in bundle/layout.py).

A bundle is an uncompressed POSIX tar `appliance-<version>.tar` holding one top folder
`appliance-<version>/`. SHA256SUMS lists every other file in `sha256sum -c` format and
SHA256SUMS.sig is its SSH signature (namespace "appliance-bundle"). See docs/formats.md.
"""

import re
from dataclasses import dataclass

BUNDLE_PREFIX = "appliance-"
ARCHIVE_SUFFIX = ".tar"

INSTALL_SCRIPT = "install.sh"
FLEET_SCRIPT = "fleet.sh"  # runs the fleet playbooks from a controller without Ansible
CHECKSUMS = "SHA256SUMS"
CHECKSUMS_SIG = "SHA256SUMS.sig"
MANIFEST = "manifest.json"
SIGNER_KEY = (
    "signer.pub"  # the signing key's public half, for --trust-fingerprint on a first install
)
WHEELS_DIR = "wheels"
IMAGES_DIR = "images"
ANSIBLE_DIR = "ansible"
SBOM_DIR = "sbom"
DOCS_DIR = "docs"

# The two files SHA256SUMS cannot list: itself and its signature.
UNLISTED_FILES = (CHECKSUMS, CHECKSUMS_SIG)

SIGNATURE_NAMESPACE = "appliance-bundle"
MANIFEST_FORMAT = "appliance-bundle"
MANIFEST_VERSION = 1
MANIFEST_REQUIRED_FIELDS = ("format", "format_version", "version", "min_upgrade_from", "images")
IMAGE_ENTRY_FIELDS = ("file", "sha256", "size")

# Small files read whole into memory during verification; anything larger is refused.
MAX_CHECKSUMS_BYTES = 4 << 20
MAX_SIGNATURE_BYTES = 16 << 10
MAX_MANIFEST_BYTES = 1 << 20

# Also an image tag and a folder name on the node, hence no '+' or '~'.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")


def archive_name(version: str) -> str:
    """The bundle archive's file name: appliance-<version>.tar."""
    return f"{top_dir(version)}{ARCHIVE_SUFFIX}"


def top_dir(version: str) -> str:
    """The single top folder inside the archive: appliance-<version>."""
    return f"{BUNDLE_PREFIX}{version}"


def version_of(top: str) -> str | None:
    """The version named by a top folder `appliance-<version>`, or None if it is not one."""
    if not top.startswith(BUNDLE_PREFIX):
        return None
    version = top[len(BUNDLE_PREFIX) :]
    return version if VERSION_PATTERN.fullmatch(version) else None


# --- what goes inside: wheel cache, images, SBOMs -------------------------------------------------

WHEELS_LOCK = "requirements.lock"  # wheels/requirements.lock: every wheel with its sha256
# wheels/bootstrap.lock: ansible-core and what it needs, installed by install.sh with pip run from
# its own wheel (wheels/pip-*.whl) into a temporary folder, so that Ansible runs before anything
# on the node changes, on a node with neither pip nor python3-venv.
BOOTSTRAP_LOCK = "bootstrap.lock"
BOOTSTRAP_ROOTS = ("ansible-core",)
SERVER_IMAGE_FILE = "images/server.tar"
SERVER_IMAGE_NAME = "localhost/appliance-server"
SBOM_WHEELS = "sbom/wheels.cdx.json"
SBOM_SERVER_IMAGE = "sbom/server-image.cdx.json"

# The project's own wheel in wheels/ (and in the server image) carries the node's packages only:
# the builder (bundle/) and the workstation's tools (ml_workstation/) never reach a node.
NODE_PACKAGES = ("appliance", "server")

# Where the server image's Python packages are (the auditor reads the image's code there).
IMAGE_SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"


# --- the nodes a bundle installs on -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeTarget:
    """One node kind a bundle can carry: a Debian release on x86_64 and its own python3."""

    name: str  # debian12, debian13: the manifest's targets[].name and the folder debs/<name>
    codename: str  # bookworm, trixie: the archive's suite names start with it
    os_version_id: str  # VERSION_ID in the node's /etc/os-release
    python: str  # the release's python3 (major.minor): the wheels in wheels/ are for it


NODE_TARGETS = (
    NodeTarget("debian12", "bookworm", "12", "3.11"),
    NodeTarget("debian13", "trixie", "13", "3.13"),
)
# debs/<target>/<archive>/{dists,pool}: Debian packages with Debian's signed metadata
DEBS_DIR = "debs"
# What the appliance needs beyond a standard installation, by engine (python3-venv for any engine).
NODE_BASE_PACKAGES = ("python3-venv",)
ENGINE_PACKAGES = {"podman": ("podman", "runc"), "docker": ("docker.io",)}
# From trixie on, Debian ships the docker command apart from the daemon, as a Recommends of
# docker.io that --no-install-recommends leaves out.
ENGINE_EXTRA_PACKAGES = {("trixie", "docker"): ("docker-cli",)}
DEFAULT_ENGINE = "podman"


def engine_packages(target: NodeTarget, engine: str) -> tuple[str, ...]:
    """The Debian packages `engine` needs on `target`, beyond NODE_BASE_PACKAGES."""
    return ENGINE_PACKAGES[engine] + ENGINE_EXTRA_PACKAGES.get((target.codename, engine), ())


def node_target(name: str) -> NodeTarget:
    """The NodeTarget called `name`; KeyError names the known ones."""
    for target in NODE_TARGETS:
        if target.name == name:
            return target
    known = ", ".join(t.name for t in NODE_TARGETS)
    raise KeyError(f"unknown node target {name!r} (known: {known})")


# --- debs/: Debian's packages with Debian's signed metadata -----------------------------------------
#
# debs/<target>/<archive>/ is a Debian repository tree (apt reads it as a `file:` source):
# dists/<suite>/InRelease and dists/<suite>/main/binary-amd64/Packages.xz, the exact bytes
# Debian signed, and each .deb at its Packages `Filename` (pool/main/...). See docs/formats.md.

DEBIAN_ARCH = "amd64"
DEBIAN_COMPONENT = "main"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # debian-archive-keyring's
INRELEASE = "InRelease"
PACKAGES_INDEX = f"{DEBIAN_COMPONENT}/binary-{DEBIAN_ARCH}/Packages.xz"  # below dists/<suite>/
DEB_SUFFIX = ".deb"
BASE_REQUIREMENT = "base"  # the manifest's requires["base"]: NODE_BASE_PACKAGES

# Limits for the Debian metadata a verifier reads (Debian's own are a few hundred KB and ~10 MB).
MAX_INRELEASE_BYTES = 4 << 20
MAX_PACKAGES_XZ_BYTES = 64 << 20
MAX_PACKAGES_BYTES = 512 << 20  # Packages.xz decompressed

TARGET_ENTRY_FIELDS = (
    "name",
    "codename",
    "os_version_id",
    "python",
    "debs_dir",
    "sources",
    "requires",
    "closure",
    "bytes",
)
SOURCE_ENTRY_FIELDS = ("archive", "suite", "component", "date", "inrelease_sha256")
CLOSURE_ENTRY_FIELDS = ("name", "version", "file", "sha256", "size")


@dataclass(frozen=True)
class DebianSuite:
    """One suite of one Debian archive (the path below the mirror: debian, debian-security)."""

    archive: str
    suite: str

    @property
    def inrelease(self) -> str:
        """The suite's InRelease, relative to a target's debs folder (or a mirror's root)."""
        return f"{self.archive}/dists/{self.suite}/{INRELEASE}"

    @property
    def packages_index(self) -> str:
        """The suite's Packages.xz, relative to a target's debs folder (or a mirror's root)."""
        return f"{self.archive}/dists/{self.suite}/{PACKAGES_INDEX}"


def debian_suites(target: NodeTarget) -> tuple[DebianSuite, ...]:
    """The suites a target's packages come from: the release, its updates, its security updates."""
    return (
        DebianSuite("debian", target.codename),
        DebianSuite("debian", f"{target.codename}-updates"),
        DebianSuite("debian-security", f"{target.codename}-security"),
    )


def debs_dir(target: NodeTarget) -> str:
    """The target's folder in the bundle: debs/<target>."""
    return f"{DEBS_DIR}/{target.name}"


def debs_sbom(target: NodeTarget) -> str:
    """The SBOM of the target's .debs: sbom/debs-<target>.cdx.json."""
    return f"{SBOM_DIR}/debs-{target.name}.cdx.json"
