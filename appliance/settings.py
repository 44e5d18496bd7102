"""Node settings as data: each has a flag, an APPLIANCE_* environment variable and a default.

The CLI builds its shared options from this table and docs/admin-guide.md documents every row
(a test checks both).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One setting: its option name, environment variable, default and help text."""

    name: str
    env: str
    default: str
    help: str

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. --data-dir."""
        return "--" + self.name.replace("_", "-")


DATA_DIR = Setting(
    "data_dir",
    "APPLIANCE_DATA_DIR",
    "/var/lib/appliance",
    "Data store: versions/, current, staging/, rejected/, history.jsonl.",
)
SIGNERS = Setting(
    "signers",
    "APPLIANCE_SIGNERS",
    "/etc/appliance/allowed_signers",
    "OpenSSH allowed_signers file: the keys trusted to sign result packs.",
)
WATCH_INTERVAL = Setting(
    "interval",
    "APPLIANCE_WATCH_INTERVAL",
    "5",
    "Seconds between two looks at the inbox folders; a pack is imported once it has not "
    "changed for a whole interval.",
)
IMPORT_MEMORY = Setting(
    "import_memory",
    "APPLIANCE_IMPORT_MEMORY",
    "4GB",
    "Memory DuckDB may use while building a version (it spills to staging/ beyond that).",
)
IMPORT_THREADS = Setting(
    "import_threads",
    "APPLIANCE_IMPORT_THREADS",
    "0",
    "Threads DuckDB may use while building a version; 0 means one per core.",
)

SETTINGS = (DATA_DIR, SIGNERS, WATCH_INTERVAL, IMPORT_MEMORY, IMPORT_THREADS)
