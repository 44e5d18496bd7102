"""Import a result pack into the data store: verify, build a version, publish it atomically."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from appliance.data import store_layout as layout
from appliance.data.import_counts import FAULT, IMPORTED, NO_REASON, REJECTED, count_outcome
from appliance.data.import_report import ImportReport, SignerInfo
from appliance.data.revisions import RevisionBase, comparison_base
from appliance.data.run_layout import RunFolders
from appliance.data.store import DataStore, now_utc
from appliance.data.version_build import BuildLimits, build_database
from appliance.data.version_integrity import stamp_holds, write_check_stamp, write_checksums
from appliance.errors import NodeFault, PackRejected, StoreError
from appliance.faults import node_fault
from appliance.fsio import atomic_write_bytes, format_bytes, fsync_tree, scratch_dir
from appliance.packs.result_pack import PackManifest, format_timestamp, open_pack, parse_timestamp
from appliance.packs.schema_registry import load_registry
from appliance.progress import Progress, quiet
from appliance.trust.sshsig import AllowedSigner, VerifiedSignature

# Staging holds the copied tables plus the database and answers built from them, and DuckDB may
# spill. The series answers (36 bytes a day, uncompressed) made the peak of the store 10.1x the
# pack from 2,000 items to 10x field scale (docs/performance.md, "Imports at 1x, 5x and 10x").
FREE_SPACE_FACTOR = 12


@dataclass(frozen=True)
class ImportOptions:
    """How an import may deviate from the default rules, and what it may use."""

    force_older: bool = False
    limits: BuildLimits = field(default_factory=BuildLimits)
    max_future_hours: int = 24  # APPLIANCE_MAX_FUTURE_HOURS: how far ahead generated_at may be


@dataclass(frozen=True)
class ImportResult:
    """What an import published."""

    vid: str
    previous: str | None
    manifest: PackManifest
    rows: dict[str, int]
    seconds: dict[str, float]
    notes: list[str]


def _check_free_space(store: DataStore, pack: Path) -> None:
    """Refuse to start an import that would fill the disk (a fault of the node, not the pack)."""
    try:
        need = pack.stat().st_size * FREE_SPACE_FACTOR
    except FileNotFoundError as exc:
        raise PackRejected("not-a-pack", "no such file") from exc
    free = shutil.disk_usage(store.root).free
    if free < need:
        msg = (
            f"not enough free space in {store.root} to import {pack.name}: need about "
            f"{format_bytes(need)} ({FREE_SPACE_FACTOR}x the pack), {format_bytes(free)} free; "
            "free disk space"
        )
        raise NodeFault("disk-full", msg)


def _admission(store: DataStore, options: ImportOptions) -> Callable[[PackManifest], None]:
    """Refusals decided by the manifest alone (replay, older data), checked before any copying."""
    imported = store.imported_pack_ids()
    current = store.current()
    latest = now_utc() + timedelta(hours=options.max_future_hours)

    def admit(manifest: PackManifest) -> None:
        if manifest.generated_at > latest:
            msg = (
                f"pack was generated at {format_timestamp(manifest.generated_at)}, more than "
                f"{options.max_future_hours} h after this node's clock ({format_timestamp(now_utc())}); "
                "check the workstation's and the node's clocks (APPLIANCE_MAX_FUTURE_HOURS)"
            )
            raise PackRejected("future", msg)
        if manifest.pack_id in imported:
            msg = f"pack {manifest.pack_id} was already imported as {imported[manifest.pack_id]}"
            raise PackRejected("replay", msg)
        if current and not options.force_older:
            served = current.generated_at
            if manifest.generated_at < parse_timestamp(served):
                msg = (
                    f"pack was generated at {format_timestamp(manifest.generated_at)}, before the "
                    f"current version {current.vid} ({served}); use --force-older to import it anyway"
                )
                raise PackRejected("older", msg)

    return admit


def import_pack(
    store: DataStore,
    pack: Path,
    signers: Sequence[AllowedSigner],
    options: ImportOptions | None = None,
    progress: Progress = quiet,
) -> ImportResult:
    """Verify `pack` and publish it as the new current version; PackRejected changes nothing."""
    options = options or ImportOptions()
    with store.writer() as notes:
        for note in notes:
            progress(f"recovery: {note}")
        try:
            _check_free_space(store, pack)
            result = _import_locked(store, pack, signers, options, progress, notes)
        except NodeFault as exc:
            _record_fault(store, pack, exc)
            raise
        # The except tuple is evaluated only when something was raised (DuckDB is imported then).
        except (OSError, MemoryError, _duckdb_error()) as exc:
            fault = node_fault(exc, f"importing {pack.name}")
            if fault is None:
                raise  # a DuckDB error that is neither the pack's nor the node's: a bug
            _record_fault(store, pack, fault)
            raise fault from exc
        except PackRejected as exc:
            fields: dict[str, Any] = {
                "pack_file": str(pack),
                "reason": exc.reason,
                "message": str(exc),
                **exc.details,
            }
            # A disk too full to take the reason file still gets the refusal on the command line.
            with contextlib.suppress(OSError):
                store.write_rejection(
                    pack.name,
                    fields
                    | {"refused_at": format_timestamp(now_utc()), "actor": store.actor.label()},
                )
                store.record("reject", **fields)
            _count(store, REJECTED, exc.reason)
            raise
        _count(store, IMPORTED, NO_REASON)
        return result


def _duckdb_error() -> type[Exception]:
    """DuckDB's base error class (DuckDB is imported only once an import runs)."""
    import duckdb

    return duckdb.Error


def _record_fault(store: DataStore, pack: Path, fault: NodeFault) -> None:
    """Record a fault of the node in the trail, if the node still lets us write it."""
    with contextlib.suppress(OSError):  # a full or read-only disk: the CLI still prints it
        store.record("fault", pack_file=str(pack), reason=fault.reason, message=str(fault))
    _count(store, FAULT, fault.reason)


def _count(store: DataStore, result: str, reason: str) -> None:
    """Count how this import ended, for /metrics, if the node still lets us write it."""
    with contextlib.suppress(OSError):  # the outcome is in the trail and on the command line
        count_outcome(store.import_counts_file, result, reason, now_utc())


def _import_locked(
    store: DataStore,
    pack: Path,
    signers: Sequence[AllowedSigner],
    options: ImportOptions,
    progress: Progress,
    notes: list[str],
) -> ImportResult:
    registry = load_registry()
    seconds: dict[str, float] = {}
    previous = store.current_vid()
    vid = store.next_vid()
    work = store.staging_dir / f"import-{vid}"
    work.mkdir(mode=0o700)
    try:
        tables_dir = work / "tables"
        version_dir = work / vid
        tables_dir.mkdir()
        version_dir.mkdir()
        started = time.perf_counter()
        progress(f"verifying {pack.name}")
        opened = open_pack(
            pack, tables_dir, signers, progress, registry, _admission(store, options)
        )
        seconds["verify"] = time.perf_counter() - started

        started = time.perf_counter()
        progress(f"building {vid}")
        try:
            rows = build_database(
                opened,
                version_dir / layout.VERSION_DATABASE,
                options.limits,
                progress,
                registry,
                vid,
                _revision_base(store, vid, progress),
            )
        except PackRejected as exc:
            exc.details |= {
                "pack_id": opened.manifest.pack_id,
                "dataset_id": opened.manifest.dataset_id,
            }
            raise
        shutil.rmtree(tables_dir)
        seconds["build"] = time.perf_counter() - started

        started = time.perf_counter()
        manifest = opened.manifest
        report = ImportReport(
            version=vid,
            previous=previous,
            pack_file=str(pack),
            pack_id=manifest.pack_id,
            dataset_id=manifest.dataset_id,
            model_version=manifest.model_version,
            source=manifest.source,
            generated_at=format_timestamp(manifest.generated_at),
            created_by=manifest.created_by,
            schema_registry_version=manifest.schema_registry_version,
            manifest_sha256=opened.manifest_sha256,
            signer=SignerInfo(opened.signer.principal, opened.signer.fingerprint),
            rows=rows,
            imported_at=format_timestamp(now_utc()),
            imported_by=store.actor.label(),
            forced_older=options.force_older,
        )
        (version_dir / layout.VERSION_MANIFEST).write_bytes(opened.manifest_bytes)
        (version_dir / layout.VERSION_SIGNATURE).write_bytes(opened.signature)
        atomic_write_bytes(version_dir / layout.VERSION_REPORT, report.to_bytes())
        write_checksums(version_dir)  # the seal: written last, before the rename
        for path in version_dir.iterdir():
            path.chmod(0o444 if path.is_file() else 0o555)
        fsync_tree(version_dir)
        # The sums were just made from these files: the server need not hash them again. Before
        # the publish, so that a running server's workers find it when `current` moves (the
        # rename into versions/ keeps each file's inode, times and size).
        with contextlib.suppress(OSError):
            write_check_stamp(RunFolders(store.root).check_stamp(vid), version_dir)
        progress(f"publishing {vid}")
        note = store.publish(version_dir, vid, report.history_fields())
        if note is not None:
            progress(note)
            notes.append(note)
        seconds["publish"] = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImportResult(vid, previous, manifest, rows, seconds, notes)


def _revision_base(store: DataStore, vid: str, progress: Progress) -> RevisionBase | None:
    """The version `vid`'s revisions are precomputed against: the one before it, if any.

    Only one whose files still have the facts they had when last checked against their
    SHA256SUMS (its own import wrote them): comparing with a damaged version would publish
    wrong numbers, and hashing it here would cost seconds per GB. The server computes the same
    rows on demand, after its own check, for a version left out here.
    """
    try:
        base = comparison_base(store, vid, None)
    except StoreError:
        return None
    if base is None:
        return None
    if not stamp_holds(RunFolders(store.root).check_stamp(base.vid), base.path):
        progress(
            f"revisions against {base.vid} not precomputed (its files are not known good); served on demand"
        )
        return None
    return RevisionBase(base.vid, base.database, base.generated_at)


def rollback(store: DataStore, vid: str) -> tuple[str | None, str]:
    """Serve version `vid` again; returns (previous, new) version ids."""
    with store.writer():
        target = store.version(vid)
        try:
            previous = store.current_vid()
        except StoreError:
            previous = None  # a broken pointer: this rollback repairs it
        if previous == target.vid:
            msg = f"{vid} is already the current version"
            raise StoreError(msg)
        store.switch_current(target.vid)
        store.record(
            "rollback",
            version=target.vid,
            previous=previous,
            dataset_id=target.report.dataset_id,
            generated_at=target.generated_at,
        )
        return previous, target.vid


def check_pack(
    pack: Path,
    signers: Sequence[AllowedSigner],
    work_parent: Path,
    limits: BuildLimits | None = None,
    progress: Progress = quiet,
) -> tuple[PackManifest, VerifiedSignature, dict[str, int]]:
    """Run every check an import runs, in a scratch folder, without a data store."""
    with scratch_dir(work_parent, ".pack-check-") as work:
        tables_dir = work / "tables"
        tables_dir.mkdir()
        opened = open_pack(pack, tables_dir, signers, progress)
        rows = build_database(opened, work / "check.duckdb", limits or BuildLimits(), progress)
        return opened.manifest, opened.signer, rows
