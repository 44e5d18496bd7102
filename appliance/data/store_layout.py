"""The node's data store layout as constants (APPLIANCE_DATA_DIR). See docs/formats.md."""

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
STAGING_DIR = "staging"
REJECTED_DIR = "rejected"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"
# How many imports ended in each way (appliance/data/import_counts.py), for the server's /metrics.
IMPORT_COUNTS_FILE = "imports.json"

VERSION_MANIFEST = "pack.json"
VERSION_SIGNATURE = "pack.json.sig"
VERSION_DATABASE = "data.duckdb"
VERSION_REPORT = "import.json"
VERSION_ANSWERS = "answers.bin"

VERSION_PREFIX = "v"
VERSION_DIGITS = 4


def version_id(number: int) -> str:
    """The id of the `number`-th version: v0001, v0002, ..."""
    return f"{VERSION_PREFIX}{number:0{VERSION_DIGITS}d}"


def version_number(vid: str) -> int | None:
    """The number of a version id, or None if `vid` is not one."""
    digits = vid.removeprefix(VERSION_PREFIX)
    if vid.startswith(VERSION_PREFIX) and digits.isdigit() and len(digits) >= VERSION_DIGITS:
        return int(digits)
    return None


# Written last into a version folder before it is renamed into versions/: the SHA-256 of every
# other file of the version, in `sha256sum -c` format. A version is checked against it.
VERSION_CHECKSUMS = "SHA256SUMS"
# Names the version an import is publishing, from just before its rename into versions/ until
# its history line is written; recovery decides from it (never from the trail) what to undo.
PUBLISH_INTENT = ".publishing"

# The audit trail's hash chain: each line names the SHA-256 of the line before it.
HISTORY_CHAIN_FIELD = "prev_sha256"
HISTORY_CHAIN_START = "0" * 64
# The chain's head, rewritten after every append: "<lines> <SHA-256 of the last line>". Without
# it a damaged last line would go unnoticed, and the next line would chain onto the damage.
HISTORY_HEAD = "history.head"
# Held by whoever appends to the trail, from reading its last line to writing the head.
HISTORY_LOCK = "history.lock"

# The token book (appliance/access/tokens.py): the SHA-256 of every named API token, its lock,
# and a file per token whose mtime is when a server worker last accepted it.
TOKENS_FILE = "tokens.json"
TOKENS_LOCK = "tokens.lock"
TOKENS_USED_DIR = "tokens.used"
