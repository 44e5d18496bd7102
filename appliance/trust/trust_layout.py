"""The trust update format and the node's trust files as constants: writer and reader share them.

A trust update is an uncompressed POSIX tar `<name>.trust` of two members, in this order:
`trust-update.json` (what the role's trust becomes) and `trust-update.json.sig` (its SSH
signature, namespace "appliance-trust"). On the node, each role's trust is an allowed_signers
file with two files beside it: `<signers>.revoked` (the revocation list, public key lines as
`ssh-keygen -Y verify -r` reads them) and `<signers>.serial` (the serial of the last update
applied). See docs/formats.md.
"""

from pathlib import Path

from appliance.bundles.bundle_layout import SIGNATURE_NAMESPACE as BUNDLE_NAMESPACE
from appliance.packs.pack_layout import SIGNATURE_NAMESPACE as PACK_NAMESPACE

UPDATE_SUFFIX = ".trust"
UPDATE_MANIFEST = "trust-update.json"
UPDATE_SIGNATURE = "trust-update.json.sig"
UPDATE_MEMBERS = (UPDATE_MANIFEST, UPDATE_SIGNATURE)

FORMAT_NAME = "appliance-trust-update"
FORMAT_VERSION = 1
SIGNATURE_NAMESPACE = "appliance-trust"

ROLE_BUNDLE = "bundle"
ROLE_PACK = "pack"
# The namespace each role's keys sign for; a line of a role's update may grant only this one
# and SIGNATURE_NAMESPACE (which lets the key sign the role's next update).
ROLE_NAMESPACES = {ROLE_BUNDLE: BUNDLE_NAMESPACE, ROLE_PACK: PACK_NAMESPACE}
ROLES = tuple(ROLE_NAMESPACES)

UPDATE_FIELDS = (
    "format",
    "format_version",
    "role",
    "serial",
    "issued_at",
    "allowed_signers",
    "revoked_keys",
)
MAX_SERIAL = (1 << 63) - 1  # what a shell's and ssh-keygen's 64-bit integers hold

MAX_UPDATE_FILE_BYTES = 4 << 20
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 16 << 10

REVOKED_SUFFIX = ".revoked"
SERIAL_SUFFIX = ".serial"

# Where the node keeps each role's allowed_signers (the Ansible trust role writes them there),
# relative to NODE_CONFIG_DIR. The pack role's files have a folder of their own, which the
# importer's service (the appliance user) may write: `appliance watch` applies the pack trust
# updates dropped in an inbox. The bundle role's stay root's.
NODE_CONFIG_DIR = "/etc/appliance"
NODE_PACK_TRUST_DIR = "pack-trust"
NODE_SIGNERS = {ROLE_BUNDLE: "bundle_signers", ROLE_PACK: f"{NODE_PACK_TRUST_DIR}/pack_signers"}

# The first bytes of ssh-keygen's binary KRL: this appliance reads the plain list only.
KRL_MAGIC = b"SSHKRL\n\0"


def revoked_path(signers: Path) -> Path:
    """The revocation list that goes with the allowed_signers file `signers`."""
    return signers.with_name(f"{signers.name}{REVOKED_SUFFIX}")


def serial_path(signers: Path) -> Path:
    """The file holding the serial of the last trust update applied to `signers`."""
    return signers.with_name(f"{signers.name}{SERIAL_SUFFIX}")
