"""The node's data store layout as constants (APPLIANCE_DATA_DIR). See docs/formats.md."""

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
STAGING_DIR = "staging"
REJECTED_DIR = "rejected"
CACHE_DIR = "cache"
HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".lock"

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
