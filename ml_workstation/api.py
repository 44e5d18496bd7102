"""The Python API for ML pipelines: `write_pack` makes a signed result pack from tables in memory.

A pipeline hands its gold tables as pyarrow Tables, pandas DataFrames or polars DataFrames
(whichever it uses: none of pandas or polars is a dependency of the appliance, they are only
imported when such a table is given), or the path of a folder or DuckDB database file, exactly
as `mlws pack` takes them. The tables are conformed to the registry as `mlws pack` does; the
library never prints: the conversions made come back with the pack.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, SchemaError
from ml_workstation.pack_builder import BuiltPack, PackRequest, build_pack

INSTALL_HINT = {
    "pyarrow": "pip install 'appliance[workstation]'",
    "pandas": "pip install pandas",
    "polars": "pip install polars",
}


def _library(name: str) -> Any:
    """Import an optional library, or say in one line how to install it."""
    try:
        return import_module(name)
    except ImportError as exc:
        msg = f"{name} is needed for this table but is not installed ({INSTALL_HINT[name]})"
        raise ConfigError(msg) from exc


def _library_of(table: object) -> str:
    """The top-level package a table object comes from, e.g. 'pandas'."""
    return type(table).__module__.split(".", 1)[0]


def as_arrow(name: str, table: object) -> Any:
    """Table `name` as a pyarrow Table, from a pyarrow Table, a pandas or a polars DataFrame.

    pandas' index goes along as pandas writes it to Parquet: a plain range index is left out,
    an unnamed one becomes `__index_level_0__` (left out by the conforming), a named one a column.
    """
    library = _library_of(table)
    pa = _library("pyarrow")
    try:
        if isinstance(table, pa.Table):
            return table
        if library == "pandas" and type(table).__name__ == "DataFrame":
            _library("pandas")
            return pa.Table.from_pandas(table)
        if library == "polars" and type(table).__name__ in {"DataFrame", "LazyFrame"}:
            _library("polars")
            frame: Any = table
            if type(table).__name__ == "LazyFrame":
                frame = frame.collect()
            return frame.to_arrow()
    except (pa.ArrowException, TypeError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{name}: the {library} table cannot be read as Arrow ({detail})"
        raise SchemaError(msg) from exc
    msg = (
        f"{name}: a {type(table).__module__}.{type(table).__name__} is not a table; "
        "give a pyarrow Table, a pandas DataFrame or a polars DataFrame"
    )
    raise ConfigError(msg)


def write_pack(
    tables: Mapping[str, Any] | str | Path,
    *,
    key: str | Path,
    out: str | Path,
    dataset_id: str | None = None,
    model_version: str | None = None,
    source: str | None = None,
    generated_at: datetime | None = None,
) -> BuiltPack:
    """Conform `tables` to the registry, sign them with `key` and write the pack to `out`.

    `tables` maps each gold table's name to a pyarrow Table, a pandas DataFrame or a polars
    DataFrame; or it is a folder of table files or a DuckDB database file. The metadata values
    left None are the ones the tables carry (generated_at: else now). Returns the pack written:
    `.path`, `.pack_id`, `.manifest` and `.conversions`. Raises `TablesDoNotConform` (with
    `.problems`, every one of them) when a table cannot be conformed without losing
    information; any failure leaves no file at `out`.
    """
    given: Path | dict[str, Any]
    if isinstance(tables, str | Path):
        given = Path(tables).expanduser()
    else:
        given = {name: as_arrow(name, table) for name, table in tables.items()}
    request = PackRequest(given, dataset_id, model_version, source, generated_at)
    return build_pack(request, Path(key).expanduser(), Path(out).expanduser())
