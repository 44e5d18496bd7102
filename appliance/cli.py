"""The `appliance` command: import, list and roll back data versions on the node."""

from __future__ import annotations

import errno
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click

from appliance import __version__
from appliance import settings as cfg
from appliance.access.site_tls import load_site_certificate
from appliance.bundles.bundle_layout import DEBIAN_KEYRING
from appliance.console import F, OneLineErrors, Progress, reported_errors, setting_option
from appliance.console import data_dir_option as console_data_dir_option
from appliance.data.importer import ImportOptions, import_pack, rollback
from appliance.data.run_layout import RunClaim, prepare_run_dir
from appliance.data.store import DataStore
from appliance.data.version_build import BuildLimits
from appliance.data.watch import InboxEvent, InboxWatcher
from appliance.errors import ApplianceError, ConfigError, StoreError
from appliance.faults import os_fault
from appliance.fsio import format_bytes
from appliance.support.support_bundle import BundleOptions, NodePaths, write_support_bundle
from appliance.trust.sshsig import load_allowed_signers

data_dir_option = console_data_dir_option()
signers_option = setting_option(cfg.SIGNERS, type=click.Path(path_type=Path, dir_okay=False))


def check_memory_size(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Accept what DuckDB's memory_limit accepts: a number and a unit, e.g. 4GB or 512MiB."""
    if not cfg.MEMORY_SIZE.fullmatch(value.strip()):
        msg = f"{value!r} is not a memory size like 4GB or 512MiB"
        raise click.BadParameter(msg)
    return value.strip()


def import_limit_options(func: F) -> F:
    """Options bounding what DuckDB may use while building a version, and how far ahead a pack may be dated."""
    func = setting_option(cfg.MAX_FUTURE_HOURS, type=click.IntRange(min=0, max=100_000))(func)
    func = setting_option(cfg.IMPORT_THREADS, type=click.IntRange(min=0, max=256))(func)
    return setting_option(cfg.IMPORT_MEMORY, type=str, callback=check_memory_size)(func)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="appliance")
def main() -> None:
    """Offline analytics appliance: verify and import result packs, manage data versions."""


@main.command("import")
@click.argument("packs", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@data_dir_option
@signers_option
@click.option(
    "--force-older", is_flag=True, help="Import a pack generated before the current version."
)
@import_limit_options
def import_command(
    packs: tuple[Path, ...],
    data_dir: Path,
    signers: Path,
    force_older: bool,
    import_memory: str,
    import_threads: int,
    max_future_hours: int,
) -> None:
    """Verify result packs and publish each as the new current data version.

    Prints the id of each new version on stdout. A refused pack changes nothing in the store; its
    reason is printed, recorded in history.jsonl and left in rejected/. Exits 3 when the pack was
    refused, 4 on a fault of the node (disk full, out of memory, read-only disk: nothing is
    refused, the same pack may be imported once the node is fixed).
    """
    options = ImportOptions(
        force_older, BuildLimits(import_memory, import_threads), max_future_hours
    )
    store = DataStore(data_dir)
    progress = Progress()
    failures = 0
    exit_code = 1
    with reported_errors():
        trusted = load_allowed_signers(signers)
    for pack in packs:
        try:
            result = import_pack(store, pack, trusted, options, progress)
        except ApplianceError as exc:
            click.echo(f"error: {pack.name}: {exc}", err=True)
            failures += 1
            exit_code = exc.exit_code
            continue
        timing = ", ".join(f"{stage} {secs:.3f}s" for stage, secs in result.seconds.items())
        progress(f"{pack.name}: published {result.vid} ({timing})")
        click.echo(result.vid)
    if failures:
        sys.exit(exit_code if len(packs) == 1 else 1)


@main.command("versions")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable, for scripts).")
@click.option(
    "--verify",
    is_flag=True,
    help="Check every file of every version against its SHA256SUMS (reads every byte).",
)
def versions_command(data_dir: Path, as_json: bool, verify: bool) -> None:
    """List the data versions in the store, oldest first; * marks the current one.

    With --verify, checks every version for damage (bit rot, edits) instead and exits 1 if one
    is damaged: roll back to a good version (`appliance rollback VID`) or import its pack again.
    """
    store = DataStore(data_dir)
    require_store(store)
    if verify:
        verify_versions(store, as_json)
        return
    with reported_errors():
        current = store.current_vid()
        versions = store.versions()
    rows = [v.summary(v.vid == current) for v in versions]
    if as_json:
        click.echo(json.dumps({"current": current, "versions": rows}, indent=2))
        return
    if not rows:
        click.echo(f"no data versions in {data_dir} yet (import a pack with `appliance import`)")
        return
    click.echo(
        f"  {'VERSION':<8} {'GENERATED AT':<21} {'DATASET':<24} {'MODEL':<22} {'SOURCE':<10} IMPORTED AT"
    )
    for row in rows:
        mark = "*" if row["current"] else " "
        click.echo(
            f"{mark} {row['version']:<8} {row['generated_at']:<21} {row['dataset_id']:<24} "
            f"{row['model_version']:<22} {row['source']:<10} {row['imported_at']}"
        )


def require_store(store: DataStore) -> None:
    """Exit with one line if the data dir is not there (only an import creates a store)."""
    if not store.root.is_dir():
        with reported_errors():
            msg = f"no data store at {store.root} (an import creates it; set --data-dir or APPLIANCE_DATA_DIR)"
            raise StoreError(msg)


def verify_versions(store: DataStore, as_json: bool) -> None:
    """Print what checking every version found; exit 1 if any is damaged."""
    with reported_errors():
        current = store.current_vid()
        checks = store.check_versions()
    if as_json:
        rows = [
            {"version": c.vid, "current": c.vid == current, "ok": c.ok, "sealed": c.sealed,
             "files": c.files, "problems": c.problems}
            for c in checks
        ]  # fmt: skip
        click.echo(json.dumps({"current": current, "versions": rows}, indent=2))
    else:
        for check in checks:
            click.echo(f"{'*' if check.vid == current else ' '} {check.describe()}")
    damaged = [c.vid for c in checks if not c.ok]
    if damaged:
        click.echo(
            f"error: damaged: {', '.join(damaged)}; roll back to a good version "
            "(`appliance rollback VID`) or import its pack again",
            err=True,
        )
        sys.exit(1)


@main.group("history")
def history_group() -> None:
    """The audit trail (history.jsonl): check its hash chain."""


@history_group.command("verify")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (stable, for scripts).")
def history_verify_command(data_dir: Path, as_json: bool) -> None:
    """Check that no line of the audit trail was changed, removed or reordered.

    Each line carries the SHA-256 of the line before it. Exits 0 if the chain is intact, 1 with
    the number of the first bad line if not. A damaged trail is only reported: nothing on the
    node acts on it.
    """
    store = DataStore(data_dir)
    require_store(store)
    with reported_errors():
        check = store.verify_history()
    if as_json:
        click.echo(json.dumps(check.as_json(), indent=2))
    else:
        click.echo(check.describe())
    if not check.ok:
        sys.exit(1)


@main.command("rollback")
@click.argument("vid")
@data_dir_option
def rollback_command(vid: str, data_dir: Path) -> None:
    """Serve an earlier (or later) data version again, by id, e.g. v0002."""
    require_store(DataStore(data_dir))
    with reported_errors():
        previous, current = rollback(DataStore(data_dir), vid)
    click.echo(f"current version: {current} (was {previous})")


@main.command("support-bundle")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The archive to write (.tar.gz, a new file), e.g. /media/usb/support.tar.gz.",
)
@click.option("--since", default=BundleOptions.since, show_default=True, help="Journal window.")
@click.option(
    "--lines",
    type=click.IntRange(min=1, max=1_000_000),
    default=BundleOptions.lines,
    show_default=True,
    help="Lines of each trail and log.",
)
def support_bundle_command(out: Path, since: str, lines: int) -> None:
    """Write this node's diagnostics to one archive to carry off the site (no secrets in it).

    Node facts, what is installed and its trail, the data store's versions and checks, the
    server's health and metrics (when it answers), the appliance units' journal, the
    container's inspect, the settings and the inbox refusals, with a README.txt of what is
    inside. Works with the server down or the data dir damaged: what cannot be had is noted.
    """
    if not out.parent.is_dir():
        msg = f"--out {out}: no folder {out.parent}"
        raise click.BadParameter(msg, param_hint="--out")
    with reported_errors():
        try:
            bundle = write_support_bundle(
                out, NodePaths.from_env(), BundleOptions(since=since, lines=lines)
            )
        except FileExistsError as exc:
            msg = f"--out {out} already exists: give a new file"
            raise ConfigError(msg) from exc
        except OSError as exc:
            raise os_fault(exc, f"writing the support bundle {out}") from exc
    progress = Progress()
    for note in bundle.notes:
        progress(f"not gathered: {note}")
    click.echo(str(out))


@main.command("watch")
@click.argument(
    "inboxes", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False)
)
@data_dir_option
@signers_option
@setting_option(cfg.WATCH_INTERVAL, type=click.FloatRange(min=0.05, max=3600))
@setting_option(cfg.WATCH_SETTLE, type=click.FloatRange(min=0, max=86400))
@click.option(
    "--once",
    is_flag=True,
    help="Look twice, the settle time (at least one interval) apart, import what is ready, exit.",
)
@import_limit_options
def watch_command(
    inboxes: tuple[Path, ...],
    data_dir: Path,
    signers: Path,
    interval: float,
    settle: float,
    once: bool,
    import_memory: str,
    import_threads: int,
    max_future_hours: int,
) -> None:
    """Import packs dropped into inbox folders (a network share, a USB stick mount).

    A pack is read once it has kept its size and time for --settle seconds. Imported packs move
    to done/, refused ones to rejected/ with a .reason.txt beside them; on a fault of the node
    (disk full, out of memory) a pack stays where it is and is tried again. Stops cleanly on
    SIGTERM or Ctrl-C, after the import under way. With --once: exits 0 when nothing was
    refused or left waiting (also when there was nothing to import), 3 otherwise.
    """
    progress = Progress()
    options = ImportOptions(
        limits=BuildLimits(import_memory, import_threads), max_future_hours=max_future_hours
    )
    watcher = InboxWatcher(DataStore(data_dir), list(inboxes), signers, options, settle, progress)

    def report(event: InboxEvent) -> None:
        progress(f"{event.inbox}: {event.message}")

    if once:
        first = watcher.poll()
        time.sleep(max(interval, settle))  # long enough for a pack to settle between the looks
        events = first + watcher.poll()
        for event in events:
            report(event)
        if any(event.kind in ("rejected", "deferred", "error") for event in events):
            sys.exit(3)
        return
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    progress(f"watching {', '.join(map(str, inboxes))} every {interval:g}s")
    watcher.run(interval, stop, report)
    progress("stopped")


@main.command("serve")
@data_dir_option
@signers_option
@setting_option(cfg.HOST, type=str)
@setting_option(cfg.PORT, type=click.IntRange(min=1, max=65535))
@setting_option(cfg.WORKERS, type=click.IntRange(min=0, max=64))
@setting_option(cfg.TLS_CERT, type=str)
@setting_option(cfg.TLS_KEY, type=str)
@click.option(
    "--share-port",
    is_flag=True,
    envvar=cfg.SHARE_PORT.env,
    show_envvar=True,
    help="Listen even if another server already listens on HOST:PORT (the kernel then shares "
    "new connections between the two).",
)
@setting_option(cfg.RUN_NAME, type=str)
def serve_command(
    data_dir: Path,
    signers: Path,
    host: str,
    port: int,
    workers: int,
    tls_cert: str,
    tls_key: str,
    share_port: bool,
    run_name: str,
) -> None:
    """Serve the read-only API on HOST:PORT with Granian worker processes.

    The data dir must exist (an import creates it); a store with nothing imported yet is
    served, answering 503 until a pack is imported. Refuses a HOST:PORT that another process
    already listens on, unless --share-port: an upgrade starts the new version beside the old
    one, each with its own --run-name folder. On SIGTERM, requests under way get 5 s to
    finish. With --tls-cert and --tls-key it speaks HTTPS only (a plain HTTP client fails its
    handshake) and sends HSTS. Every other server setting (tokens, limits, timeouts, cache,
    DuckDB) comes from its APPLIANCE_* environment variable; see docs/configuration.md.
    """
    flags = {
        cfg.DATA_DIR: data_dir,
        cfg.SIGNERS: signers,
        cfg.HOST: host,
        cfg.PORT: port,
        cfg.WORKERS: workers,
        cfg.TLS_CERT: tls_cert,
        cfg.TLS_KEY: tls_key,
        cfg.RUN_NAME: run_name.strip() or secrets.token_hex(4),
    }
    for setting, value in flags.items():
        os.environ[setting.env] = str(value)  # the workers read their settings from the environment
    require_store(DataStore(data_dir))
    with reported_errors():
        settings = cfg.load_server_settings()
        if not share_port:
            refuse_a_served_port(host, port)
        site = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            site = load_site_certificate(settings.tls_cert, settings.tls_key)
        claim, notes = prepare_to_serve(settings)
    progress = Progress()
    for note in notes:
        progress(note)
    scheme = "https" if site else "http"
    progress(
        f"serving {data_dir} on {scheme}://{host}:{port} with {settings.workers} workers "
        f"(run {settings.run_name}{', port shared' if share_port else ''})"
    )
    if site is not None:
        names = ", ".join(site.names) or "no names"
        progress(f"TLS certificate {site.fingerprint} for {names}, until {site.not_after:%Y-%m-%d}")
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from appliance.handover import HandoverServer

    server = HandoverServer(
        "server.asgi:app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        respawn_failed_workers=True,
        log_level=LogLevels(settings.log_level),
        # HTTP/1 only: while Granian's automatic mode sniffs the protocol, no timer runs, and a
        # client that connects and sends nothing is held open for good. In HTTP/1 mode the
        # header timeout runs from the connection's start (with TLS too).
        http=HTTPModes.http1,
        ssl_cert=site.cert if site else None,
        ssl_key=site.key if site else None,
        ssl_protocol_min=SSLProtocols.tls12,  # field laptops' browsers: TLS 1.2 and up
        http1_settings=HTTP1Settings(header_read_timeout=settings.header_timeout * 1000),
        # A request still running then (a slow upload) would hold the shutdown for as long as
        # the client likes; its worker is killed, and the next start clears what it left.
        workers_kill_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    server.on_leave = lambda seconds, stayed: progress(
        f"left the shared port; the connections accepted get {seconds:g} s to send their requests"
        if not stayed
        else f"warning: {stayed} of {settings.workers} workers did not leave the shared port; "
        f"stopping them anyway in {seconds:g} s"
    )
    server.serve()
    claim.release()  # the run folder is this server's until here (or the process's end)


SHUTDOWN_GRACE_SECONDS = 5  # after the leave (2.5 s at most): within the unit's `podman stop -t 10`


def refuse_a_served_port(host: str, port: int) -> None:
    """ConfigError if some process already listens on host:port.

    Granian's listening sockets allow port sharing, so a second server would start silently and
    take half the connections; the probe binds without that option, and so fails on any listener.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        msg = f"cannot listen on {host}: {exc.strerror}"
        raise ConfigError(msg) from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                msg = (
                    f"{host}:{port} is already in use (another appliance serve?): stop it, "
                    "choose another --port, or pass --share-port to share it"
                )
            else:
                msg = f"cannot listen on {host}:{port} ({exc.strerror})"
            raise ConfigError(msg) from exc


def prepare_to_serve(settings: cfg.ServerSettings) -> tuple[RunClaim, list[str]]:
    """Before the workers start: this run's own folder (stale runs' removed), a recovered store."""
    try:
        claim = prepare_run_dir(settings.data_dir, settings.run_name)
    except OSError as exc:
        raise os_fault(exc, f"preparing {settings.run_dir} for the server") from exc
    store = DataStore(settings.data_dir)
    try:
        with store.writer() as notes:
            return claim, [f"recovery: {note}" for note in notes]
    except StoreError as exc:
        return claim, [f"store not checked now: {exc}"]


@main.command("audit")
@click.argument("bundle", required=False, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--source",
    "source",
    type=click.Path(path_type=Path, file_okay=False),
    help="Check a source tree (the repository) instead of a bundle.",
)
@click.option(
    "--max-image-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=600,
    show_default=True,
    help="Largest uncompressed image allowed, in MB (10^6 bytes). Bundles only.",
)
@click.option(
    "--largest",
    type=click.IntRange(min=1, max=1000),
    default=10,
    show_default=True,
    help="How many of each image's largest files to list. Bundles only.",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the whole report as JSON to this file.",
)
@click.pass_context
def audit_command(
    ctx: click.Context,
    bundle: Path | None,
    source: Path | None,
    max_image_mb: float,
    largest: int,
    json_file: Path | None,
) -> None:
    """Check that no ML library can reach the node, in a built BUNDLE or a --source tree.

    BUNDLE (.tar or unpacked folder): per image its sizes (uncompressed, gzip -6, file), layers,
    largest files and Python distributions; then no image over --max-image-mb, no ML
    distribution or package, no CUDA/GPU library, no ML route in the server app it ships, no
    ML import in its code, no ML wheel in the wheel cache. It does NOT check signatures or
    checksums: run `appliance verify` first. To list routes it builds the image's server app
    (without serving it) in a child Python, so audit only a bundle you have verified.

    --source DIR: scans the node's code (appliance/, server/) and its builder (bundle/), its
    dependencies and locks, and the routes of the server built from that tree. ml_workstation/
    may use ML and is not scanned.

    Exits 1 if anything is found; 2 or 3, with one error line, if the input cannot be read
    (safely).
    """
    from click.core import ParameterSource

    if source is not None and bundle is None:
        for name in ("max_image_mb", "largest"):
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT:
                msg = f"--{name.replace('_', '-')} applies to a BUNDLE, not to --source"
                raise click.UsageError(msg)
        from appliance.audit.audit_source import audit_source

        with reported_errors():
            tree = audit_source(source)
        if json_file is not None:
            json_file.write_text(json.dumps(tree.as_json(), indent=2) + "\n", encoding="utf-8")
        checked = ", ".join(f"{count} {what}" for what, count in tree.checked.items())
        for finding in tree.findings:
            click.echo(f"{finding.kind:<10} {finding.where}: {finding.detail}")
        if not tree.ok:
            click.echo(
                f"error: {len(tree.findings)} ML finding(s) in {source} ({checked} checked)",
                err=True,
            )
            sys.exit(1)
        click.echo(f"no ML on the node: {checked} checked")
        return
    if bundle is None or source is not None:
        msg = "give either BUNDLE or --source DIR (exactly one)"
        raise click.UsageError(msg)
    from appliance.audit.bundle_audit import audit_bundle, render_table

    with reported_errors():
        audit = audit_bundle(
            bundle, max_image_mb=max_image_mb, largest=largest, progress=Progress()
        )
    if json_file is not None:
        json_file.write_text(json.dumps(audit.as_json(), indent=2) + "\n", encoding="utf-8")
    click.echo("\n".join(render_table(audit)))
    if not audit.ok:
        click.echo(f"error: {len(audit.findings)} finding(s) in {bundle}", err=True)
        sys.exit(1)


@main.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@signers_option
@click.option(
    "--debian-keyring",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Keyring of Debian's archive keys for the .debs in debs/ [default: {DEBIAN_KEYRING}; "
    "without it or gpgv that check is skipped with a note, unless this flag is given].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(bundle: Path, signers: Path, debian_keyring: Path | None, as_json: bool) -> None:
    """Verify a bundle (.tar or unpacked folder): signature, every checksum, nothing unlisted.

    The same checks an operator can make with stock tools (sha256sum -c, ssh-keygen -Y verify),
    plus the ones they cannot: no file that SHA256SUMS does not list, and a sane manifest.
    Use --signers with the allowed_signers file that trusts the bundle signing key. The .debs
    in debs/ are then traced to Debian's own signatures (gpgv, InRelease, Packages.xz), as the
    node's apt would trace them.
    """
    from appliance.bundles.bundle_verify import verify_bundle
    from appliance.bundles.debian_archive import provenance_problem

    keyring = debian_keyring or Path(DEBIAN_KEYRING)
    problem = provenance_problem(keyring)
    with reported_errors():
        if problem is not None and debian_keyring is not None:
            msg = f"--debian-keyring: {problem}"
            raise ConfigError(msg)
        report = verify_bundle(
            bundle,
            load_allowed_signers(signers),
            progress=Progress(),
            debian_keyring=None if problem else keyring,
        )
    if problem is not None and report.manifest.get("targets"):
        click.echo(f"note: the .debs' Debian signatures were not checked: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    click.echo(f"{bundle}: OK, appliance {report.version}")
    click.echo(f"  signed by  {report.principal} ({report.fingerprint})")
    click.echo(
        f"  files      {report.files} listed in SHA256SUMS, {format_bytes(report.bytes)}, all checked"
    )
    debian = report.debian
    if debian is not None and debian.targets:
        names = ", ".join(f"{target.name} {target.debs}" for target in debian.targets)
        click.echo(
            f"  debs       {names} .debs, {format_bytes(debian.bytes)}, "
            f"each traced to Debian's InRelease signed by a key in {debian.keyring}"
        )


from appliance.access.tls_cli import tls_group  # noqa: E402 (the groups register below)
from appliance.access.token_cli import token_group  # noqa: E402

main.add_command(token_group)
main.add_command(tls_group)


from appliance.trust.trust_cli import trust_group  # noqa: E402 (the group registers below)

main.add_command(trust_group)
