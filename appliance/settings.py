"""Node settings as data: each has a flag, an APPLIANCE_* environment variable and a default.

The CLI builds its shared options from this table and docs/admin-guide.md documents every row
(a test checks both).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.access.secret_files import check_private
from appliance.data.run_layout import DEFAULT_RUN_NAME, RunFolders, check_run_name
from appliance.errors import ConfigError

MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


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
    "Seconds between two looks at the inbox folders (a pack is read once it has settled: "
    "see APPLIANCE_WATCH_SETTLE).",
)
WATCH_SETTLE = Setting(
    "settle",
    "APPLIANCE_WATCH_SETTLE",
    "10",
    "Seconds a pack in an inbox must keep the same size and modification time before it is "
    "read, so a copy that pauses is never taken half-written.",
)
MAX_FUTURE_HOURS = Setting(
    "max_future_hours",
    "APPLIANCE_MAX_FUTURE_HOURS",
    "24",
    "Refuse a pack whose generated_at is more than this many hours ahead of the node's clock.",
)
IMPORT_MEMORY = Setting(
    "import_memory",
    "APPLIANCE_IMPORT_MEMORY",
    "4GB",
    "Memory DuckDB may use while building a version (it spills to staging/ beyond that); the "
    "import's peak RSS stays within this plus 1 GB (measured up to 10x field scale).",
)
IMPORT_THREADS = Setting(
    "import_threads",
    "APPLIANCE_IMPORT_THREADS",
    "0",
    "Threads DuckDB may use while building a version; 0 means one per core.",
)


# --- the server (`appliance serve`) -------------------------------------------------------------

HOST = Setting("host", "APPLIANCE_HOST", "127.0.0.1", "Address the server listens on.")
PORT = Setting("port", "APPLIANCE_PORT", "8080", "TCP port the server listens on.")
SHARE_PORT = Setting(
    "share_port",
    "APPLIANCE_SHARE_PORT",
    "0",
    "1: listen even if another appliance server already listens on HOST:PORT (the kernel then "
    "shares new connections between the two; the installer's upgrades start the new version so, "
    "beside the old one); 0: refuse such a port.",
)
RUN_NAME = Setting(
    "run_name",
    "APPLIANCE_RUN_NAME",
    "",
    "Name of this server's own folder under data_dir/run (metrics, rate-limit counters, uploads; "
    "1-32 of a-z, 0-9, '-'); empty: a new random name at each start. Two servers running at once "
    "need two names.",
)
WORKERS = Setting(
    "workers",
    "APPLIANCE_WORKERS",
    "0",
    "Server worker processes; 0 means one per core, at most 8.",
)
ADMIN_TOKEN = Setting(
    "admin_token",
    "APPLIANCE_ADMIN_TOKEN",
    "",
    "Bearer token for the admin endpoints (refresh, upload, rollback). Empty: admin endpoints "
    "are refused. Prefer APPLIANCE_ADMIN_TOKEN_FILE.",
)
ADMIN_TOKEN_FILE = Setting(
    "admin_token_file",
    "APPLIANCE_ADMIN_TOKEN_FILE",
    "",
    "File holding the admin bearer token (first line); wins over APPLIANCE_ADMIN_TOKEN.",
)
VIEWER_TOKEN = Setting(
    "viewer_token",
    "APPLIANCE_VIEWER_TOKEN",
    "",
    "Bearer token the read endpoints require; empty means reads are open.",
)
VIEWER_TOKEN_FILE = Setting(
    "viewer_token_file",
    "APPLIANCE_VIEWER_TOKEN_FILE",
    "",
    "File holding the viewer bearer token (first line); wins over APPLIANCE_VIEWER_TOKEN.",
)
TLS_CERT = Setting(
    "tls_cert",
    "APPLIANCE_TLS_CERT",
    "",
    "PEM certificate the server serves HTTPS with (with APPLIANCE_TLS_KEY); empty: plain HTTP.",
)
TLS_KEY = Setting(
    "tls_key",
    "APPLIANCE_TLS_KEY",
    "",
    "The certificate's private key (PEM, PKCS#8, no passphrase, not readable by other users).",
)
RATE_LIMIT = Setting(
    "rate_limit",
    "APPLIANCE_RATE_LIMIT",
    "6000",
    "Requests per minute one client address may make to the API, counted across all workers; "
    "0 turns the limit off.",
)
ADMIN_RATE_LIMIT = Setting(
    "admin_rate_limit",
    "APPLIANCE_ADMIN_RATE_LIMIT",
    "30",
    "Admin requests per minute one client address may make (bad tokens included).",
)
CACHE_MB = Setting(
    "cache_mb",
    "APPLIANCE_CACHE_MB",
    "256",
    "Size cap of the response cache shared by the workers (data_dir/cache), in MiB.",
)
MAX_UPLOAD_MB = Setting(
    "max_upload_mb",
    "APPLIANCE_MAX_UPLOAD_MB",
    "2048",
    "Largest result pack POST /api/v1/data/packs accepts, in MiB.",
)
EXPORT_SLOTS = Setting(
    "export_slots",
    "APPLIANCE_EXPORT_SLOTS",
    "2",
    "Exports (GET /api/v1/export/...) the node streams at once, across all workers; each takes "
    "one core while it runs, and one client address may run one at a time.",
)
EXPORT_SECONDS = Setting(
    "export_seconds",
    "APPLIANCE_EXPORT_SECONDS",
    "3600",
    "Longest an export may take; one still running then is cut off (the client sees a failed "
    "download) and its slot freed, so a client that reads very slowly cannot hold one for hours.",
)
DUCKDB_MEMORY = Setting(
    "duckdb_memory",
    "APPLIANCE_DUCKDB_MEMORY",
    "1GB",
    "Memory each worker's DuckDB may use for queries (keep workers x this well under RAM).",
)
DUCKDB_THREADS = Setting(
    "duckdb_threads",
    "APPLIANCE_DUCKDB_THREADS",
    "1",
    "Threads each worker's DuckDB may use per query.",
)
HEADER_TIMEOUT = Setting(
    "header_timeout",
    "APPLIANCE_HEADER_TIMEOUT",
    "10",
    "Seconds a client may take to send a request's headers before the server closes the "
    "connection.",
)
BODY_TIMEOUT = Setting(
    "body_timeout",
    "APPLIANCE_BODY_TIMEOUT",
    "60",
    "Seconds an upload may go without sending any bytes before the server drops it.",
)
LOG_LEVEL = Setting(
    "log_level",
    "APPLIANCE_LOG_LEVEL",
    "info",
    "Server log level: debug, info, warning or error (JSON lines on stderr).",
)
LOG_READS = Setting(
    "log_reads",
    "APPLIANCE_LOG_READS",
    "2",
    "Successful reads (200 or 304) each worker logs in full per second; every read is counted in "
    "a `reads` line per worker every 10 s, and every other request is always logged. 0: none in "
    "full.",
)
FAST_PATH = Setting(
    "fast_path",
    "APPLIANCE_FAST_PATH",
    "1",
    "1: the request edge answers precomputed and in-memory reads itself; 0: every request goes "
    "through the framework (the same answers, slower; for diagnosis).",
)

SERVER_SETTINGS = (
    DATA_DIR,
    SIGNERS,
    HOST,
    PORT,
    SHARE_PORT,
    RUN_NAME,
    WORKERS,
    ADMIN_TOKEN,
    ADMIN_TOKEN_FILE,
    VIEWER_TOKEN,
    VIEWER_TOKEN_FILE,
    TLS_CERT,
    TLS_KEY,
    RATE_LIMIT,
    ADMIN_RATE_LIMIT,
    CACHE_MB,
    MAX_UPLOAD_MB,
    EXPORT_SLOTS,
    EXPORT_SECONDS,
    DUCKDB_MEMORY,
    DUCKDB_THREADS,
    IMPORT_MEMORY,
    IMPORT_THREADS,
    MAX_FUTURE_HOURS,
    HEADER_TIMEOUT,
    BODY_TIMEOUT,
    LOG_LEVEL,
    LOG_READS,
    FAST_PATH,
)
MAX_WORKERS = 8
LOG_LEVELS = ("debug", "info", "warning", "error")

SETTINGS = (
    *SERVER_SETTINGS[:2],
    WATCH_INTERVAL,
    WATCH_SETTLE,
    *(s for s in SERVER_SETTINGS[2:] if s not in (IMPORT_MEMORY, IMPORT_THREADS, MAX_FUTURE_HOURS)),
    IMPORT_MEMORY,
    IMPORT_THREADS,
    MAX_FUTURE_HOURS,
)
"""Every setting of the node, in documentation order."""


@dataclass(frozen=True)
class ServerSettings:
    """The server's settings, read once per process from APPLIANCE_* variables."""

    data_dir: Path
    signers: Path
    host: str
    port: int
    workers: int
    admin_token: str
    viewer_token: str
    rate_limit: int
    admin_rate_limit: int
    cache_bytes: int
    max_upload_bytes: int
    duckdb_memory: str
    duckdb_threads: int
    import_memory: str
    import_threads: int
    max_future_hours: int
    header_timeout: int
    body_timeout: int
    log_level: str
    log_reads: int = 2
    fast_path: bool = True
    export_slots: int = 2
    export_seconds: int = 3600
    share_port: bool = False
    run_name: str = DEFAULT_RUN_NAME
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS (and only HTTPS)."""
        return self.tls_cert is not None

    @property
    def folders(self) -> RunFolders:
        """The server's run folder (metrics, rate-limit counters, uploads) and response cache."""
        return RunFolders(self.data_dir, self.run_name)

    @property
    def run_dir(self) -> Path:
        """Per-run shared state of the workers."""
        return self.folders.run


def read_token(env: Mapping[str, str], value: Setting, file: Setting) -> str:
    """A bootstrap token from its _FILE setting (first line), else its value setting.

    The file must not be readable or writable by other users (ConfigError says so).
    """
    path = env.get(file.env, file.default)
    if path:
        check_private(Path(path), f"{file.env}:", secret=True)
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            msg = f"{file.env}: cannot read {path} ({exc.strerror})"
            raise ConfigError(msg) from exc
        token = lines[0].strip() if lines else ""
        if not token:
            msg = f"{file.env}: {path} holds no token"
            raise ConfigError(msg)
        return token
    return env.get(value.env, value.default).strip()


def _integer(env: Mapping[str, str], setting: Setting, low: int, high: int) -> int:
    raw = env.get(setting.env, setting.default)
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        msg = f"{setting.env}={raw!r}: must be a whole number from {low} to {high}"
        raise ConfigError(msg)
    return value


def default_workers() -> int:
    """One worker per core, at most MAX_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Read and check every server setting; ConfigError names the first bad one."""
    env = os.environ if env is None else env
    workers = _integer(env, WORKERS, 0, 64) or default_workers()
    log_level = env.get(LOG_LEVEL.env, LOG_LEVEL.default).lower()
    if log_level not in LOG_LEVELS:
        msg = f"{LOG_LEVEL.env}={log_level!r}: must be one of {', '.join(LOG_LEVELS)}"
        raise ConfigError(msg)
    for setting in (DUCKDB_MEMORY, IMPORT_MEMORY):
        if not MEMORY_SIZE.fullmatch(env.get(setting.env, setting.default).strip()):
            msg = f"{setting.env}: must be a size like 4GB or 512MiB"
            raise ConfigError(msg)
    return ServerSettings(
        data_dir=Path(env.get(DATA_DIR.env, DATA_DIR.default)),
        signers=Path(env.get(SIGNERS.env, SIGNERS.default)),
        host=env.get(HOST.env, HOST.default),
        port=_integer(env, PORT, 1, 65535),
        workers=workers,
        admin_token=read_token(env, ADMIN_TOKEN, ADMIN_TOKEN_FILE),
        viewer_token=read_token(env, VIEWER_TOKEN, VIEWER_TOKEN_FILE),
        rate_limit=_integer(env, RATE_LIMIT, 0, 10_000_000),
        admin_rate_limit=_integer(env, ADMIN_RATE_LIMIT, 0, 100_000),
        cache_bytes=_integer(env, CACHE_MB, 1, 1_000_000) << 20,
        max_upload_bytes=_integer(env, MAX_UPLOAD_MB, 1, 1_000_000) << 20,
        duckdb_memory=env.get(DUCKDB_MEMORY.env, DUCKDB_MEMORY.default).strip(),
        duckdb_threads=_integer(env, DUCKDB_THREADS, 1, 256),
        import_memory=env.get(IMPORT_MEMORY.env, IMPORT_MEMORY.default).strip(),
        import_threads=_integer(env, IMPORT_THREADS, 0, 256),
        max_future_hours=_integer(env, MAX_FUTURE_HOURS, 0, 100_000),
        header_timeout=_integer(env, HEADER_TIMEOUT, 1, 3600),
        body_timeout=_integer(env, BODY_TIMEOUT, 1, 3600),
        log_level=log_level,
        log_reads=_integer(env, LOG_READS, 0, 1_000_000),
        fast_path=bool(_integer(env, FAST_PATH, 0, 1)),
        export_slots=_integer(env, EXPORT_SLOTS, 1, 64),
        export_seconds=_integer(env, EXPORT_SECONDS, 1, 7 * 24 * 3600),
        share_port=bool(_integer(env, SHARE_PORT, 0, 1)),
        run_name=_run_name(env),
        **_tls_pair(env),
    )


def _run_name(env: Mapping[str, str]) -> str:
    """The run folder's name; empty (a server not started by `appliance serve`): the default."""
    name = env.get(RUN_NAME.env, RUN_NAME.default).strip()
    if not name:
        return DEFAULT_RUN_NAME
    try:
        return check_run_name(name)
    except ConfigError as exc:
        msg = f"{RUN_NAME.env}: {exc}"
        raise ConfigError(msg) from exc


def _tls_pair(env: Mapping[str, str]) -> dict[str, Path | None]:
    """The certificate and key, both or neither (the pair itself is checked before serving)."""
    cert = env.get(TLS_CERT.env, TLS_CERT.default).strip()
    key = env.get(TLS_KEY.env, TLS_KEY.default).strip()
    if bool(cert) != bool(key):
        given, missing = (TLS_CERT, TLS_KEY) if cert else (TLS_KEY, TLS_CERT)
        msg = f"{given.env} is set but {missing.env} is not: HTTPS needs both"
        raise ConfigError(msg)
    return {"tls_cert": Path(cert) if cert else None, "tls_key": Path(key) if key else None}
