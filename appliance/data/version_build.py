"""Build the query-ready database of one data version from a verified pack's tables.

Each table is loaded sorted by its registry sort key (item, then date for the facts), so the
server's per-item lookups read a few contiguous row groups. The rows are checked before anything
is published: nulls, metadata equal to the manifest, patterns, invariants, keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.data.answers import build_answers
from appliance.data.revisions import (
    ITEM_REVISION_TABLE,
    PAIR_TABLE,
    RevisionBase,
    precompute_revisions,
)
from appliance.errors import NodeFault, PackRejected
from appliance.faults import fault_reason, node_fault
from appliance.packs.pack_layout import METADATA_COLUMNS
from appliance.packs.result_pack import OpenedPack, format_timestamp
from appliance.packs.schema_registry import SchemaRegistry, TableSchema, load_registry
from appliance.packs.table_checks import foreign_key_problems, literal, quote, table_problems
from appliance.progress import Progress

if TYPE_CHECKING:
    import duckdb

META_TABLE = "appliance_version"


@dataclass(frozen=True)
class BuildLimits:
    """Resources DuckDB may use while building (the node keeps serving meanwhile)."""

    memory_limit: str = "4GB"
    threads: int = 0  # 0: DuckDB's default, one per core


def _configure(con: duckdb.DuckDBPyConnection, limits: BuildLimits, temp_dir: Path) -> None:
    con.execute(f"SET memory_limit = {literal(limits.memory_limit)}")
    con.execute(f"SET temp_directory = {literal(str(temp_dir))}")
    con.execute("SET preserve_insertion_order = true")
    if limits.threads > 0:
        con.execute(f"SET threads = {int(limits.threads)}")


def build_database(
    opened: OpenedPack,
    db_path: Path,
    limits: BuildLimits,
    progress: Progress,
    registry: SchemaRegistry | None = None,
    vid: str | None = None,
    revision_base: RevisionBase | None = None,
) -> dict[str, int]:
    """Load, sort and check every table of `opened` into a new DuckDB file; rows per table.

    With `vid` (a real import, not a dry run), also precompute the per-item answers the server
    serves without a query (answers.bin beside the database), and with `revision_base` the
    forecast revisions against that version.
    """
    import duckdb

    registry = registry or load_registry()
    temp_dir = db_path.parent / ".duckdb-tmp"
    con = duckdb.connect(str(db_path))
    try:
        _configure(con, limits, temp_dir)
        rows, relations = _load_tables(con, opened, registry, progress)
        problems = foreign_key_problems(con, registry, relations)
        if problems:
            raise PackRejected("data", problems[0])
        meta = _write_version_meta(con, opened)
        if vid is not None:
            # A fresh connection starts the answers with an empty buffer pool: after the loads
            # it holds up to the memory limit of cached table blocks, and at 10x field scale
            # the answer queries ran 1.5x slower evicting them.
            con.close()
            con = duckdb.connect(str(db_path))
            _configure(con, limits, temp_dir)
            build_answers(con, db_path.parent, meta | {"version": vid}, progress)
            if revision_base is not None:
                _precompute_revisions(con, vid, meta, revision_base, progress)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return rows


def _precompute_revisions(
    con: duckdb.DuckDBPyConnection,
    vid: str,
    meta: dict[str, str],
    base: RevisionBase,
    progress: Progress,
) -> None:
    """The revisions against the version before, if its database reads; else none are kept.

    They are a shortcut: without them the server computes the same rows on demand, so a
    previous version that cannot be read costs this import nothing but a progress line.
    """
    import duckdb

    try:
        precompute_revisions(con, vid, meta["generated_at"], base, progress)
    except (duckdb.Error, OSError) as exc:
        if fault_reason(exc) == "disk-full":
            raise  # the rest of the build would fail as well: the import reports the fault
        con.execute(f"DROP TABLE IF EXISTS {ITEM_REVISION_TABLE}")
        con.execute(f"DROP TABLE IF EXISTS {PAIR_TABLE}")
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        progress(f"revisions against {base.vid} not precomputed ({detail}); served on demand")


def _load_tables(
    con: duckdb.DuckDBPyConnection,
    opened: OpenedPack,
    registry: SchemaRegistry,
    progress: Progress,
) -> tuple[dict[str, int], dict[str, str]]:
    """Load and check each table of the pack; (rows per table, quoted name per table)."""
    rows: dict[str, int] = {}
    relations = {}
    for name in registry.tables:
        if name not in opened.table_files:
            continue
        table = registry.table(name)
        _load_table(con, table, opened.table_files[name])
        metadata_problems, data_problems = table_problems(
            con, table, quote(name), opened.manifest.metadata
        )
        if metadata_problems:
            raise PackRejected("metadata", metadata_problems[0])
        if data_problems:
            raise PackRejected("data", data_problems[0])
        count = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()
        rows[name] = int(count[0]) if count else 0
        # The signed count, against what was loaded: the footer's count is the writer's word.
        signed_rows = opened.manifest.tables[name].rows
        if rows[name] != signed_rows:
            msg = f"{name}: {rows[name]:,} rows loaded, the manifest says {signed_rows:,}"
            raise PackRejected("schema", msg)
        relations[name] = quote(name)
        progress(f"{name}: {rows[name]:,} rows loaded, sorted and checked")
    return rows, relations


def _load_table(con: duckdb.DuckDBPyConnection, table: TableSchema, path: Path) -> None:
    """CREATE the table from its Parquet file, sorted by its sort key."""
    import duckdb

    name = table.name
    columns = ", ".join(quote(c) for c in table.column_names)
    order = ", ".join(quote(c) for c in table.sort_key)
    try:
        con.execute(
            f"CREATE TABLE {quote(name)} AS SELECT {columns} "
            f"FROM read_parquet({literal(str(path))}) ORDER BY {order}"
        )
    except duckdb.Error as exc:
        # A full disk or too little memory is the node's fault (DuckDB reports a full disk
        # as a FATAL error, not an IOException): refuse nothing, tell the admin.
        detail = str(exc).splitlines()[0]
        fault = node_fault(exc, f"building {name}")
        if fault is None and isinstance(exc, duckdb.IOException):
            fault = NodeFault("io-error", f"building {name} failed on this node ({detail})")
        if fault is not None:
            raise fault from exc
        # The footer was readable, the pages are not: signed, but not valid Parquet data.
        msg = f"{name}: the Parquet data cannot be read ({detail})"
        raise PackRejected("unreadable-table", msg) from exc


def _write_version_meta(con: duckdb.DuckDBPyConnection, opened: OpenedPack) -> dict[str, str]:
    """Record the pack's identity inside the database, so a server can tell what it serves."""
    manifest = opened.manifest
    values = {
        "pack_id": manifest.pack_id,
        "registry_version": str(manifest.schema_registry_version),
        **{k: str(v) for k, v in manifest.metadata.items() if k in METADATA_COLUMNS},
        "generated_at": format_timestamp(manifest.generated_at),
    }
    con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", list(values.items()))
    return values
