"""Build signed result packs from a folder of gold tables (one `<table>.parquet` per table).

Each table is checked against the schema registry. A table without the traceability metadata
columns is rewritten with them (registry column order, sorted by the sort key, ZSTD); a table with
them goes in byte for byte, and its values must equal the flags. A flag not given takes the one
value the tables carry. Every table then passes the same data checks the node runs, and is listed
with its rows, size and SHA-256 in pack.json, signed with SSHSIG.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import socket
import tarfile
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.errors import ConfigError, SchemaError, UnreadableParquet
from appliance.faults import node_fault
from appliance.fsio import atomic_output, scratch_dir, sha256_file
from appliance.packs import pack_layout as layout
from appliance.packs.parquet_footer import read_footer
from appliance.packs.result_pack import PackManifest, TableEntry, format_timestamp, parse_manifest
from appliance.packs.schema_registry import (
    SchemaRegistry,
    TableSchema,
    load_registry,
    schema_problems,
)
from appliance.packs.table_checks import (
    foreign_key_problems,
    from_epoch_us,
    literal,
    quote,
    table_problems,
)
from appliance.progress import Progress, quiet
from appliance.trust.sshsig import load_private_key, public_key_of, sign

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class PackRequest:
    """What goes into a pack: the tables folder and the traceability values.

    A value left None is the one the tables' metadata columns carry (generated_at: else now).
    """

    tables_dir: Path
    dataset_id: str | None = None
    model_version: str | None = None
    source: str | None = None
    generated_at: datetime | None = None

    def given(self, column: str) -> Any:
        """The value asked for metadata column `column`, or None."""
        value = getattr(self, column)
        return value.astimezone(UTC) if isinstance(value, datetime) else value


def _flag(column: str) -> str:
    """The `mlws pack` option that sets metadata column `column`."""
    return "--" + column.replace("_", "-")


def find_tables(tables_dir: Path, registry: SchemaRegistry) -> dict[str, Path]:
    """The registry tables present in `tables_dir`; refuse unknown files and absent required ones."""
    if not tables_dir.is_dir():
        msg = f"{tables_dir} is not a folder of <table>.parquet files"
        raise ConfigError(msg)
    try:
        # glob() would take an unreadable folder for an empty one.
        entries = sorted(tables_dir.iterdir())
    except OSError as exc:
        msg = f"{tables_dir}: cannot read the folder ({exc.strerror})"
        raise ConfigError(msg) from exc
    found = {p.stem: p for p in entries if p.suffix == layout.TABLE_SUFFIX}
    unknown = sorted(set(found) - set(registry.tables))
    if unknown:
        msg = f"{tables_dir}: {', '.join(unknown)} not in the schema registry ({', '.join(registry.tables)})"
        raise SchemaError(msg)
    absent = [name for name in registry.required_tables if name not in found]
    if absent:
        msg = f"{tables_dir}: required table(s) missing: {', '.join(absent)}"
        raise SchemaError(msg)
    return {name: found[name] for name in registry.tables if name in found}


def _has_metadata(table: TableSchema, path: Path) -> bool:
    """Whether the file carries the metadata columns (all of them), after checking its schema.

    The check is the node's, so a table that passes here passes the import.
    """
    try:
        columns = read_footer(path).columns
    except UnreadableParquet as exc:
        msg = f"{path}: not a readable Parquet file ({exc})"
        raise SchemaError(msg) from exc
    names = [column.name for column in columns]
    present = [c for c in layout.METADATA_COLUMNS if c in names]
    if present and len(present) != len(layout.METADATA_COLUMNS):
        msg = f"{path.name}: has {', '.join(present)} but not all of {', '.join(layout.METADATA_COLUMNS)}"
        raise SchemaError(msg)
    expected = table if present else dataclasses.replace(table, columns=table.data_columns)
    problems = schema_problems(expected, columns)
    if problems:
        raise SchemaError(problems[0])
    return bool(present)


def _carried_values(
    con: duckdb.DuckDBPyConnection, stamped: dict[str, Path]
) -> dict[str, set[Any]]:
    """The distinct non-null values of each metadata column across the tables that carry them."""
    carried: dict[str, set[Any]] = {column: set() for column in layout.METADATA_COLUMNS}
    selected = ", ".join(
        f"epoch_us({quote(c)})" if c == "generated_at" else quote(c)
        for c in layout.METADATA_COLUMNS
    )
    for path in stamped.values():
        # Two distinct rows already prove a disagreement: no need to read them all.
        rows = con.execute(
            f"SELECT DISTINCT {selected} FROM read_parquet({literal(str(path))}) LIMIT 2"
        ).fetchall()
        for row in rows:
            for column, value in zip(layout.METADATA_COLUMNS, row, strict=True):
                if value is not None:
                    carried[column].add(from_epoch_us(value) if column == "generated_at" else value)
    return carried


def _traceability(
    con: duckdb.DuckDBPyConnection, stamped: dict[str, Path], request: PackRequest
) -> dict[str, Any]:
    """The pack's metadata: each flag given, else the one value the tables carry.

    generated_at defaults to now when no table carries it; the other three must then be given.
    A flag that contradicts the tables is left to the data checks, which say which table and
    how many rows.
    """
    carried = _carried_values(con, stamped)
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


def _write_canonical(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    source: Path,
    target: Path,
    stamp: dict[str, str],
) -> None:
    """Rewrite a table in registry column order, sorted, ZSTD, with the metadata columns added."""
    columns = [quote(c.name) for c in table.data_columns]
    columns += [f"{value} AS {quote(name)}" for name, value in stamp.items()]
    order = ", ".join(quote(c) for c in table.sort_key)
    con.execute(
        f"COPY (SELECT {', '.join(columns)} FROM read_parquet({literal(str(source))}) "
        f"ORDER BY {order}) TO {literal(str(target))} (FORMAT parquet, COMPRESSION zstd)"
    )


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


def _prepare_tables(
    request: PackRequest,
    sources: dict[str, Path],
    registry: SchemaRegistry,
    work: Path,
    progress: Progress,
) -> tuple[PackManifest, dict[str, Path]]:
    """Stamp and check the tables into `work`; the manifest (with entries) and the files."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = {literal(str(work / 'duckdb-tmp'))}")
        stamped = {n: p for n, p in sources.items() if _has_metadata(registry.table(n), p)}
        values = _traceability(con, stamped, request)
        manifest = PackManifest(
            pack_id=str(uuid.uuid4()),
            dataset_id=values["dataset_id"],
            model_version=values["model_version"],
            source=values["source"],
            generated_at=values["generated_at"],
            created_by=f"mlws {__version__} on {socket.gethostname()}",
            schema_registry_version=registry.version,
            tables={},
        )
        stamp = {
            "model_version": f"{literal(manifest.model_version)}::VARCHAR",
            "generated_at": f"{literal(format_timestamp(manifest.generated_at))}::TIMESTAMPTZ",
            "source": f"{literal(manifest.source)}::VARCHAR",
            "dataset_id": f"{literal(manifest.dataset_id)}::VARCHAR",
        }
        canonical: dict[str, Path] = {}
        for name, path in sources.items():
            target = work / f"{name}{layout.TABLE_SUFFIX}"
            if name in stamped:
                # Already in registry layout with its metadata: the bytes go in as they are.
                shutil.copyfile(path, target)
            else:
                _write_canonical(con, registry.table(name), path, target, stamp)
                progress(f"{name}: metadata columns added")
            canonical[name] = target
        rows = _check_tables(con, canonical, manifest, registry)
        progress("data checks passed")
    except duckdb.Error as exc:
        fault = node_fault(exc, f"checking the tables in {request.tables_dir}")
        if fault is not None:
            raise fault from exc
        msg = f"{request.tables_dir}: a table cannot be read ({str(exc).splitlines()[0]})"
        raise SchemaError(msg) from exc
    finally:
        con.close()
    return _with_entries(manifest, canonical, rows, registry), canonical


def build_pack(
    request: PackRequest, key_file: Path, out: Path, progress: Progress = quiet
) -> PackManifest:
    """Validate, stamp, sign and write a result pack; returns its manifest."""
    registry = load_registry()
    private_key = load_private_key(key_file)
    _check_output(out)
    sources = find_tables(request.tables_dir, registry)
    with ExitStack() as stack:
        try:
            work = stack.enter_context(scratch_dir(out.parent, ".mlws-pack-"))
        except OSError as exc:
            msg = f"{out.parent}: cannot write there ({exc.strerror})"
            raise ConfigError(msg) from exc
        try:
            manifest, files = _prepare_tables(request, sources, registry, work, progress)
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
    return manifest


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
