"""Build signed result packs from a folder of gold tables (one `<table>.parquet` per table).

Each table is checked against the schema registry. A table without the traceability metadata
columns is rewritten with them (registry column order, sorted by the sort key, ZSTD); a table with
them goes in byte for byte, and its values must equal the flags. Every table then passes the same
data checks the node runs, and is listed with its size and SHA-256 in pack.json, signed with SSHSIG.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import socket
import tarfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import __version__
from appliance import pack_layout as layout
from appliance.errors import ConfigError, SchemaError, UnreadableParquet
from appliance.fsio import atomic_output, scratch_dir, sha256_file
from appliance.parquet_footer import read_footer
from appliance.result_pack import PackManifest, TableEntry, format_timestamp, parse_manifest
from appliance.schema_registry import SchemaRegistry, TableSchema, load_registry, schema_problems
from appliance.sshsig import load_private_key, public_key_of, sign
from appliance.table_checks import (
    foreign_key_problems,
    from_epoch_us,
    literal,
    quote,
    table_problems,
)

if TYPE_CHECKING:
    import duckdb

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PackRequest:
    """What goes into a pack: the tables folder and the traceability values."""

    tables_dir: Path
    dataset_id: str
    model_version: str
    source: str
    generated_at: datetime | None = None  # None: from the tables' generated_at, else now


def _quiet(_message: str) -> None:
    """Progress sink that drops messages."""


def find_tables(tables_dir: Path, registry: SchemaRegistry) -> dict[str, Path]:
    """The registry tables present in `tables_dir`; refuse unknown files and absent required ones."""
    if not tables_dir.is_dir():
        msg = f"{tables_dir} is not a folder of <table>.parquet files"
        raise ConfigError(msg)
    found = {p.stem: p for p in sorted(tables_dir.glob(f"*{layout.TABLE_SUFFIX}"))}
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


def _generated_at(
    con: duckdb.DuckDBPyConnection, stamped: dict[str, Path], request: PackRequest
) -> datetime:
    """The pack's generated_at: the flag's, else the one value the tables carry, else now."""
    values: set[datetime] = set()
    for path in stamped.values():
        rows = con.execute(
            f"SELECT DISTINCT epoch_us(generated_at) FROM read_parquet({literal(str(path))})"
        ).fetchall()
        values |= {from_epoch_us(row[0]) for row in rows if row[0] is not None}
    if request.generated_at is not None:
        return request.generated_at.astimezone(UTC)
    if len(values) > 1:
        msg = f"tables carry {len(values)} different generated_at values; pass --generated-at"
        raise SchemaError(msg)
    if values:
        (value,) = values
        return value.astimezone(UTC)
    return datetime.now(UTC).replace(microsecond=0)


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
) -> None:
    """Run the node's data checks on the canonical files; SchemaError on the first problem."""
    relations = {}
    for name, path in files.items():
        relation = f"read_parquet({literal(str(path))})"
        metadata_problems, data_problems = table_problems(
            con, registry.table(name), relation, manifest.metadata
        )
        problems = metadata_problems + data_problems
        if problems:
            raise SchemaError(problems[0])
        relations[name] = relation
    problems = foreign_key_problems(con, registry, relations)
    if problems:
        raise SchemaError(problems[0])


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


def build_pack(
    request: PackRequest, key_file: Path, out: Path, progress: Progress = _quiet
) -> PackManifest:
    """Validate, stamp, sign and write a result pack; returns its manifest."""
    import duckdb

    registry = load_registry()
    private_key = load_private_key(key_file)
    if out.suffix != layout.PACK_SUFFIX:
        msg = f"{out}: a result pack's name must end in {layout.PACK_SUFFIX}"
        raise ConfigError(msg)
    if not out.parent.is_dir():
        msg = f"{out.parent} is not a folder"
        raise ConfigError(msg)
    sources = find_tables(request.tables_dir, registry)
    with scratch_dir(out.parent, ".mlws-pack-") as work:
        con = duckdb.connect()
        try:
            con.execute(f"SET temp_directory = {literal(str(work / 'duckdb-tmp'))}")
            stamped = {n: p for n, p in sources.items() if _has_metadata(registry.table(n), p)}
            generated_at = _generated_at(con, stamped, request)
            manifest = PackManifest(
                pack_id=str(uuid.uuid4()),
                dataset_id=request.dataset_id,
                model_version=request.model_version,
                source=request.source,
                generated_at=generated_at,
                created_by=f"mlws {__version__} on {socket.gethostname()}",
                schema_registry_version=registry.version,
                tables={},
            )
            stamp = {
                "model_version": f"{literal(request.model_version)}::VARCHAR",
                "generated_at": f"{literal(format_timestamp(generated_at))}::TIMESTAMPTZ",
                "source": f"{literal(request.source)}::VARCHAR",
                "dataset_id": f"{literal(request.dataset_id)}::VARCHAR",
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
            _check_tables(con, canonical, manifest, registry)
            progress("data checks passed")
        except duckdb.Error as exc:
            msg = f"{request.tables_dir}: a table cannot be read ({str(exc).splitlines()[0]})"
            raise SchemaError(msg) from exc
        finally:
            con.close()
        manifest = _with_entries(manifest, canonical, registry)
        manifest_bytes = manifest.to_bytes()
        parse_manifest(manifest_bytes, registry)  # the node must accept what we sign
        signature = sign(manifest_bytes, private_key, layout.SIGNATURE_NAMESPACE)
        progress(f"signed by {public_key_of(private_key).fingerprint}")
        write_pack_archive(out, manifest_bytes, signature, canonical, int(generated_at.timestamp()))
    return manifest


def _with_entries(
    manifest: PackManifest, files: dict[str, Path], registry: SchemaRegistry
) -> PackManifest:
    """The manifest with one entry per table file: rows, bytes, SHA-256 and schema."""
    import pyarrow.parquet as pq

    entries = {
        name: TableEntry(
            name=name,
            path=layout.table_member(name),
            rows=pq.read_metadata(path).num_rows,
            bytes=path.stat().st_size,
            sha256=sha256_file(path),
            schema=registry.table(name).describe(),
        )
        for name, path in files.items()
    }
    return dataclasses.replace(manifest, tables=entries)
