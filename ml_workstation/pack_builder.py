"""Build signed result packs from the gold tables an ML pipeline wrote.

The tables come as a folder (one `<table>.parquet` or `<table>.csv` per table), a DuckDB database
file, or in memory (inputs.py). Each is conformed to the schema registry without losing
information (conform.py): a Parquet file that is already what the node takes goes in byte for
byte; any other table is rewritten in registry column order, sorted by the sort key, ZSTD, with
the metadata columns. Every problem of every table is reported at once. A flag not given takes
the one value the tables carry. The conformed tables then pass the same data checks the node
runs, and are listed with their rows, size and SHA-256 in pack.json, signed with SSHSIG.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import socket
import tarfile
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.errors import ConfigError, SchemaError
from appliance.faults import node_fault
from appliance.fsio import atomic_output, fsync_path, fsync_tree, scratch_dir, sha256_file
from appliance.packs import pack_layout as layout
from appliance.packs.parquet_footer import read_footer
from appliance.packs.result_pack import PackManifest, TableEntry, parse_manifest
from appliance.packs.schema_registry import SchemaRegistry, load_registry
from appliance.packs.table_checks import foreign_key_problems, literal, table_problems
from appliance.progress import Progress, quiet
from appliance.trust.sshsig import load_private_key, public_key_of, sign
from ml_workstation import conform
from ml_workstation.conform import Conversion, TablePlan, TablesDoNotConform
from ml_workstation.inputs import (
    IN_MEMORY,
    TableInput,
    check_table_names,
    find_inputs,
    stage_tables,
)

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class PackRequest:
    """What goes into a pack: the tables and the traceability values.

    `tables` is a folder of table files or a DuckDB database file, or a mapping of table name
    to pyarrow Table. A value left None is the one the tables' metadata columns carry
    (generated_at: else now). `pack_id` is for a reproducible build only: the node refuses a
    pack_id it has imported before, so leave it None (a fresh UUID) for a real pack.
    """

    tables: Path | Mapping[str, Any]
    dataset_id: str | None = None
    model_version: str | None = None
    source: str | None = None
    generated_at: datetime | None = None
    pack_id: str | None = None

    def given(self, column: str) -> Any:
        """The value asked for metadata column `column`, or None."""
        value = getattr(self, column)
        return value.astimezone(UTC) if isinstance(value, datetime) else value

    @property
    def where(self) -> str:
        """The tables, for a message."""
        return str(self.tables) if isinstance(self.tables, Path) else "the tables given"


@dataclass(frozen=True)
class BuiltPack:
    """A pack written: where, its manifest, and what was converted to make its tables."""

    path: Path
    manifest: PackManifest
    conversions: tuple[Conversion, ...]

    @property
    def pack_id(self) -> str:
        """The pack's unique id, as the node lists it."""
        return self.manifest.pack_id


def _flag(column: str) -> str:
    """The `mlws pack` option that sets metadata column `column`."""
    return "--" + column.replace("_", "-")


def _traceability(carried: dict[str, set[Any]], request: PackRequest) -> dict[str, Any]:
    """The pack's metadata: each flag given, else the one value the tables carry.

    generated_at defaults to now when no table carries it; the other three must then be given.
    A flag that contradicts the tables is left to the row checks, which say which table and
    which rows.
    """
    values: dict[str, Any] = {}
    for column in layout.METADATA_COLUMNS:
        given, found = request.given(column), carried[column]
        if given is not None:
            values[column] = given
        elif len(found) > 1:
            shown = ", ".join(sorted(str(v) for v in found))
            msg = f"the tables carry different {column} values ({shown}); pass {_flag(column)}"
            raise SchemaError(msg)
        elif found:
            (values[column],) = found
        elif column == "generated_at":
            values[column] = datetime.now(UTC).replace(microsecond=0)
        else:
            msg = f"no table carries {column}: pass {_flag(column)}"
            raise ConfigError(msg)
    return values


def request_inputs(request: PackRequest, registry: SchemaRegistry) -> dict[str, TableInput]:
    """The tables a request names, checked against the registry's table names."""
    if isinstance(request.tables, Path):
        return find_inputs(request.tables, registry)
    given = {name: TableInput(name, IN_MEMORY, data=data) for name, data in request.tables.items()}
    return check_table_names(request.where, given, registry)


def _check_tables(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, Path],
    manifest: PackManifest,
    registry: SchemaRegistry,
) -> dict[str, int]:
    """Run the node's data checks on the canonical files; their rows, or SchemaError.

    The node compares the signed rows with what its footer says and with what it loads, so a
    file whose footer miscounts its rows is refused here, before it is signed.
    """
    relations = {}
    rows: dict[str, int] = {}
    for name, path in files.items():
        relation = f"read_parquet({literal(str(path))})"
        metadata_problems, data_problems = table_problems(
            con, registry.table(name), relation, manifest.metadata
        )
        problems = metadata_problems + data_problems
        if problems:
            raise SchemaError(problems[0])
        counted = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
        rows[name] = int(counted[0]) if counted else 0
        footer_rows = read_footer(path).rows
        if footer_rows != rows[name]:
            msg = f"{name}: the Parquet footer says {footer_rows:,} rows, the data holds {rows[name]:,}; rewrite the file"
            raise SchemaError(msg)
        relations[name] = relation
    problems = foreign_key_problems(con, registry, relations)
    if problems:
        raise SchemaError(problems[0])
    return rows


def _tar_member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_pack_archive(
    out: Path, manifest_bytes: bytes, signature: bytes, files: dict[str, Path], mtime: int
) -> None:
    """Write the pack tar so that `out` appears whole (temporary name, flush, rename)."""
    with (
        atomic_output(out, 0o644) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in (
            (layout.MANIFEST_NAME, manifest_bytes),
            (layout.SIGNATURE_NAME, signature),
        ):
            tar.addfile(_tar_member(name, len(data), mtime), io.BytesIO(data))
        for table, path in files.items():
            info = _tar_member(layout.table_member(table), path.stat().st_size, mtime)
            with path.open("rb") as source:
                tar.addfile(info, source)


def _check_output(out: Path) -> None:
    """The pack's name must end in .pack, in a folder that exists."""
    if out.suffix != layout.PACK_SUFFIX:
        msg = f"{out}: a result pack's name must end in {layout.PACK_SUFFIX}"
        raise ConfigError(msg)
    if not out.parent.is_dir():
        msg = f"{out.parent} is not a folder"
        raise ConfigError(msg)


def _connect(work: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for conforming: UTC, input order kept, spilling into `work`."""
    import duckdb

    con = duckdb.connect(config={"preserve_insertion_order": True})
    # Timestamps turn into days, and into text for messages, in UTC whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {literal(str(work / 'duckdb-tmp'))}")
    return con


def conform_tables(
    con: duckdb.DuckDBPyConnection,
    inputs: dict[str, TableInput],
    request: PackRequest,
    registry: SchemaRegistry,
) -> tuple[dict[str, TablePlan], dict[str, Any]]:
    """Stage and plan every table and check every row; the plans and the pack's metadata.

    Raises TablesDoNotConform with every problem found, of every table.
    """
    staged = stage_tables(con, inputs)
    plans = {name: conform.plan_table(staged[name], registry.table(name)) for name in staged}
    for plan in plans.values():
        conform.create_view(con, plan)
    values = _traceability(conform.carried_values(con, plans), request)
    problems = [problem for plan in plans.values() for problem in plan.problems]
    for plan in plans.values():
        problems += conform.row_problems(con, plan, values)
    problems += conform.foreign_key_problems(con, plans, registry)
    if problems:
        conversions = [c for plan in plans.values() for c in plan.conversions]
        raise TablesDoNotConform(problems, conversions)
    return plans, values


def _prepare_tables(
    request: PackRequest,
    inputs: dict[str, TableInput],
    registry: SchemaRegistry,
    work: Path,
    progress: Progress,
    tables_dir: Path | None = None,
) -> tuple[PackManifest, dict[str, Path], list[Conversion]]:
    """Conform and check the tables into `tables_dir` (default `work`), DuckDB spilling into `work`.

    Returns the manifest (with its table entries), the table files and the conversions made.
    """
    import duckdb

    con = _connect(work)
    try:
        plans, values = conform_tables(con, inputs, request, registry)
        manifest = PackManifest(
            pack_id=request.pack_id or str(uuid.uuid4()),
            dataset_id=values["dataset_id"],
            model_version=values["model_version"],
            source=values["source"],
            generated_at=values["generated_at"],
            created_by=f"mlws {__version__} on {socket.gethostname()}",
            schema_registry_version=registry.version,
            tables={},
        )
        canonical: dict[str, Path] = {}
        conversions: list[Conversion] = []
        for name, plan in plans.items():
            target = (tables_dir or work) / f"{name}{layout.TABLE_SUFFIX}"
            if plan.as_is and plan.staged.source.path is not None:
                # Already what the node takes: the bytes go in as they are.
                shutil.copyfile(plan.staged.source.path, target)
            else:
                conform.write_conformed(con, plan, str(target), values)
                progress(f"{name}: conformed ({len(plan.conversions)} conversion(s))")
            conversions += plan.conversions
            canonical[name] = target
        rows = _check_tables(con, canonical, manifest, registry)
        progress("data checks passed")
    except duckdb.Error as exc:
        fault = node_fault(exc, f"checking the tables in {request.where}")
        if fault is not None:
            raise fault from exc
        msg = f"{request.where}: a table cannot be read ({str(exc).splitlines()[0]})"
        raise SchemaError(msg) from exc
    finally:
        con.close()
    return _with_entries(manifest, canonical, rows, registry), canonical, conversions


def build_pack(
    request: PackRequest, key_file: Path, out: Path, progress: Progress = quiet
) -> BuiltPack:
    """Conform, check, sign and write a result pack; a failure leaves no file at `out`."""
    registry = load_registry()
    private_key = load_private_key(key_file)
    _check_output(out)
    inputs = request_inputs(request, registry)
    with ExitStack() as stack:
        try:
            work = stack.enter_context(scratch_dir(out.parent, ".mlws-pack-"))
        except OSError as exc:
            msg = f"{out.parent}: cannot write there ({exc.strerror})"
            raise ConfigError(msg) from exc
        try:
            manifest, files, conversions = _prepare_tables(
                request, inputs, registry, work, progress
            )
            manifest_bytes = manifest.to_bytes()
            parse_manifest(manifest_bytes, registry)  # the node must accept what we sign
            signature = sign(manifest_bytes, private_key, layout.SIGNATURE_NAMESPACE)
            progress(f"signed by {public_key_of(private_key).fingerprint}")
            mtime = int(manifest.generated_at.timestamp())
            write_pack_archive(out, manifest_bytes, signature, files, mtime)
        except OSError as exc:
            # A full disk or a file that vanished: the workstation's fault, not the tables'.
            fault = node_fault(exc, f"making {out}")
            if fault is None:
                raise
            raise fault from exc
    return BuiltPack(out, manifest, tuple(conversions))


def _with_entries(
    manifest: PackManifest,
    files: dict[str, Path],
    rows: dict[str, int],
    registry: SchemaRegistry,
) -> PackManifest:
    """The manifest with one entry per table file: rows, bytes, SHA-256 and schema."""
    entries = {
        name: TableEntry(
            name=name,
            path=layout.table_member(name),
            rows=rows[name],
            bytes=path.stat().st_size,
            sha256=sha256_file(path),
            schema=registry.table(name).describe(),
        )
        for name, path in files.items()
    }
    return dataclasses.replace(manifest, tables=entries)


@dataclass(frozen=True)
class ConformedTables:
    """Tables conformed into a folder: where, the metadata and rows a pack of them has, and how."""

    path: Path
    manifest: PackManifest
    conversions: tuple[Conversion, ...]


def conform_to_folder(
    request: PackRequest, out_dir: Path, progress: Progress = quiet
) -> ConformedTables:
    """Conform the tables and write them into the new folder `out_dir` as a pack would hold them.

    The folder appears whole or not at all. `mlws pack` of it takes the files byte for byte.
    """
    registry = load_registry()
    if out_dir.exists() or out_dir.is_symlink():
        msg = f"{out_dir} already exists: give a new folder for the conformed tables"
        raise ConfigError(msg)
    if not out_dir.parent.is_dir():
        msg = f"{out_dir.parent} is not a folder"
        raise ConfigError(msg)
    inputs = request_inputs(request, registry)
    with ExitStack() as stack:
        try:
            work = stack.enter_context(scratch_dir(out_dir.parent, ".mlws-conform-"))
            tables_dir = work / "tables"
            tables_dir.mkdir()
        except OSError as exc:
            msg = f"{out_dir.parent}: cannot write there ({exc.strerror})"
            raise ConfigError(msg) from exc
        try:
            manifest, _, conversions = _prepare_tables(
                request, inputs, registry, work, progress, tables_dir
            )
            fsync_tree(tables_dir)
            tables_dir.rename(out_dir)
            fsync_path(out_dir.parent)
        except OSError as exc:
            fault = node_fault(exc, f"writing {out_dir}")
            if fault is None:
                raise
            raise fault from exc
    return ConformedTables(out_dir, manifest, tuple(conversions))
