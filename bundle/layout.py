"""The install bundle format as constants: builder, verifier and installer all read them from here.

A bundle is an uncompressed POSIX tar `appliance-<version>.tar` holding one top folder
`appliance-<version>/`. SHA256SUMS lists every other file in `sha256sum -c` format and
SHA256SUMS.sig is its SSH signature (namespace "appliance-bundle"). See DESIGN.md, "The bundle".
"""

import re

BUNDLE_PREFIX = "appliance-"
ARCHIVE_SUFFIX = ".tar"

INSTALL_SCRIPT = "install.sh"
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
SERVER_IMAGE_FILE = "images/server.tar"
SERVER_IMAGE_NAME = "localhost/appliance-server"
SBOM_WHEELS = "sbom/wheels.cdx.json"
SBOM_SERVER_IMAGE = "sbom/server-image.cdx.json"

# The node the bundle targets (DESIGN.md: Debian 12, CPython 3.11, x86_64).
TARGET_PYTHON = "3.11"
TARGET_DEBIAN_SUITE = "bookworm"
TARGET_ARCH = "amd64"
TARGET_GLIBC = (2, 36)  # Debian 12's glibc: manylinux wheels up to manylinux_2_36 run there

# Inside the server image.
IMAGE_USER_ID = 10001
IMAGE_USER = "appliance"
IMAGE_PYTHON = "/usr/bin/python3.11"
IMAGE_SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
IMAGE_DATA_DIR = "/var/lib/appliance"
IMAGE_CONFIG_DIR = "/etc/appliance"
IMAGE_PACK_SIGNERS = "/etc/appliance/pack_signers"
IMAGE_PORT = 8080
